#![no_main]
// Fuzz target: a board segment's bytes (header and ring) as `monitor`/`consumer` read them. The check lives in syncomm-fuzzcheck so it also runs on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| syncomm_fuzzcheck::board_segment::check(data));
