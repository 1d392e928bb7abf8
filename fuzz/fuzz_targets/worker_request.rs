#![no_main]
// Fuzz target: a caller's (or the server's) `Request` frame body, as the server and a child decode it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::worker_request::check(data));
