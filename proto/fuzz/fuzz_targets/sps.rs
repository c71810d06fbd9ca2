//! Fuzz target `sps`: see `hivecast_proto_fuzz::checks::sps` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::sps(data));
