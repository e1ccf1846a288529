//! The server connection state machine over an in-process socketpair, driven step by step by
//! the input (see `fuzz_support::connection`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::http::fuzz_support::connection(data));
