#![no_main]
// Fuzz target: a request line as `ping-server` parses it. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::ping_request::check(data));
