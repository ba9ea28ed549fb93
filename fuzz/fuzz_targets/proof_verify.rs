#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qtrace_fuzz::proof_verify(data));
