//! Fuzz target `aac_config`: see `hivecast_proto_fuzz::checks::aac_config` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hivecast_proto_fuzz::checks::aac_config(data));
