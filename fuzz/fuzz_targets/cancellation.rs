#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flow_omnium_fuzz::cancellation(data));
