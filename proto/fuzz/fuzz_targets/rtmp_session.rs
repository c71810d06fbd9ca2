//! Fuzz target `rtmp_session`: see `hivecast_proto_fuzz::checks::rtmp_session` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::rtmp_session(data));
