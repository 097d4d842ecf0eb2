#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flow_omnium_fuzz::omnium_store(data));
