#![no_main]
// Fuzz target: the server's `ToClient` frame body, as `worker call` decodes it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::worker_to_client::check(data));
