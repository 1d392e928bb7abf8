#![no_main]
// Fuzz target: the shared file as `scribe --verify` reads it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::scribe_verify::check(data));
