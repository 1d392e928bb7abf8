#![no_main]
// Fuzz target: a child's `Response` frame body, as the server decodes it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::worker_response::check(data));
