#![no_main]
// Fuzz target: the input records of the numeric and text stages. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::filter_input::check(data));
