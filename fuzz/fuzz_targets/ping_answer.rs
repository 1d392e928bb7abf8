#![no_main]
// Fuzz target: an answer line as `ping-client` checks it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::ping_answer::check(data));
