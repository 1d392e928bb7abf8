#![no_main]
// Fuzz target: the discover registry file. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::discover_registry::check(data));
