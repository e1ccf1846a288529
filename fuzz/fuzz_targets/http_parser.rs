//! The request parser wrapper (see `asyncloop::http::fuzz_support::parser`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::http::fuzz_support::parser(data));
