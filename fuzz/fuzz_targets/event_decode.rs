#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qtrace_fuzz::event_decode(data));
