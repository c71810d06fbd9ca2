//! Fuzz target `hls_query`: see `hivecast_proto_fuzz::checks::hls_query` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::hls_query(data));
