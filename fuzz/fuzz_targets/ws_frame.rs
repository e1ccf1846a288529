//! The WebSocket frame reader (see `asyncloop::http::ws::fuzz_reader`): any input cut any way
//! gives the events of reading it whole, and every event keeps the protocol's rules.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::http::ws::fuzz_reader(data));
