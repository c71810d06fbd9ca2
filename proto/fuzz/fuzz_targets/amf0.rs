//! Fuzz target `amf0`: see `hivecast_proto_fuzz::checks::amf0` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::amf0(data));
