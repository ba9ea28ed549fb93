#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qtrace_fuzz::product_code(data));
