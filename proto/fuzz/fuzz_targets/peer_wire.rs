//! Fuzz target `peer_wire`: see `hivecast_proto_fuzz::checks::peer_wire` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::peer_wire(data));
