//! Fuzz target `flv_audio`: see `hivecast_proto_fuzz::checks::flv_audio` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::flv_audio(data));
