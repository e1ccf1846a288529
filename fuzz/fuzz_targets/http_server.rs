//! The server connection state machine over loopback (see `fuzz_support::server`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::http::fuzz_support::server(data));
