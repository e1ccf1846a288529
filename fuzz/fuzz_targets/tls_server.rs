//! Arbitrary bytes into the server side of a TLS session, piece by piece (see
//! `net::tls::fuzz_support::server`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| asyncloop::net::tls::fuzz_support::server(data));
