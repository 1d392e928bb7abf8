#![no_main]
// Fuzz target: gate's key file and holder records. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::gate_records::check(data));
