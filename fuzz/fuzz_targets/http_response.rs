//! The HTTP client's response parser (see `asyncloop::http::fuzz_support::response_parser`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::http::fuzz_support::response_parser(data));
