//! Fuzz target `cmcd`: see `hivecast_proto_fuzz::checks::cmcd` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::cmcd(data));
