//! Fuzz target `h264_frames`: see `hivecast_proto_fuzz::checks::h264_frames` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::h264_frames(data));
