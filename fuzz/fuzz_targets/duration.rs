#![no_main]
// Fuzz target: a duration option (`250ms`, `1.5s`, ...). The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::duration::check(data));
