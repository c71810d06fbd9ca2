//! Fuzz target `flv_video`: see `hivecast_proto_fuzz::checks::flv_video` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::flv_video(data));
