//! Fuzz target `rtmp_handshake`: see `hivecast_proto_fuzz::checks::rtmp_handshake` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::rtmp_handshake(data));
