//! The harness of the `tls_server` fuzz target (`fuzz/`) and its corpus replay
//! (`tests/fuzz_corpus.rs`): arbitrary bytes into the server side of a TLS session, piece by
//! piece, sealing a response whenever the handshake is through. Panics if an invariant breaks.
//!
//! The certificate is made once per process with the openssl command line (no key is ever
//! committed), in a temporary directory.

use std::process::Command;
use std::sync::OnceLock;

use super::{TlsServerConfig, TlsServerOptions, TlsSession};

/// An ECDSA P-256 certificate for localhost, made by `openssl req`.
fn config() -> &'static TlsServerConfig {
    static C: OnceLock<TlsServerConfig> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("asyncloop-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let status = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-subj",
                "/CN=localhost",
                "-days",
                "2",
            ])
            .args(["-keyout", "k.pem", "-out", "c.pem"])
            .current_dir(&dir)
            .output()
            .expect("the openssl command line");
        assert!(status.status.success(), "openssl req failed");
        let opts = TlsServerOptions::from_files(&dir.join("c.pem"), &dir.join("k.pem"))
            .expect("read the certificate");
        let _ = std::fs::remove_dir_all(&dir);
        TlsServerConfig::new(&opts).expect("a server configuration")
    })
}

/// Feeds `data` to a server session: each piece is `1 + data[i]` bytes long (the length byte
/// then that many bytes), and after each, the session processes what it has.
pub fn server(data: &[u8]) {
    let mut s = TlsSession::server(config()).expect("a session");
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let mut rest = data;
    let mut failed = false;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize + 1).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        s.receive(piece);
        match s.process(&mut plain, &mut out) {
            Ok(_) => {
                assert!(!failed, "a failed session went on");
                assert!(s.failure().is_none());
                if !s.is_handshaking() {
                    let before = out.len();
                    s.encrypt(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out)
                        .expect("sealing after the handshake");
                    assert!(
                        out.len() > before + 38,
                        "a sealed record is larger than its text"
                    );
                }
            }
            Err(code) => {
                let f = s.failure().expect("a failure has its reason");
                assert_eq!(f.code, code);
                assert!(!f.reason.is_empty());
                failed = true;
                // Once failed, nothing more is processed or sealed.
                assert!(s.process(&mut plain, &mut out).is_err());
                assert!(s.encrypt(b"x", &mut out).is_err());
            }
        }
        // Whole records are consumed: what waits is at most one partial record and a
        // partial handshake message.
        assert!(
            s.incoming.len() <= 2 * (1 << 16) + 5,
            "{} bytes waiting",
            s.incoming.len()
        );
        out.clear();
        plain.clear();
    }
}
