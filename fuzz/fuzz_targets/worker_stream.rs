#![no_main]
// Fuzz target: a byte stream cut anywhere, split into frames by the server's input buffer. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::worker_stream::check(data));
