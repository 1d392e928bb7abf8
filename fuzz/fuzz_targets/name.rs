#![no_main]
// Fuzz target: a rendezvous name (`--name`). The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::name::check(data));
