#![no_main]
// Fuzz target: a `filter` stage spec. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::filter_spec::check(data));
