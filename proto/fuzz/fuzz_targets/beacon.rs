//! Fuzz target `beacon`: see `hivecast_proto_fuzz::checks::beacon` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::beacon(data));
