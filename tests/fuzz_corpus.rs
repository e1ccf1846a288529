//! Replays the fuzz corpora under `fuzz/corpus/` and the inputs that once failed under
//! `fuzz/regressions/` (kept apart: corpus minimization may drop them) through the same
//! harnesses the fuzz targets use, so `make test` keeps every one of them passing.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = replay_dir(&root.join("corpus").join(target), target, harness);
    assert!(corpus >= 10, "{target}: only {corpus} corpus files");
    let regressions = root.join("regressions").join(target);
    if regressions.exists() {
        replay_dir(&regressions, target, harness);
    }
}

/// Runs `harness` on every file in `dir`; returns how many there were.
fn replay_dir(dir: &Path, target: &str, harness: fn(&[u8])) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| harness(&data));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn http_parser_corpus() {
    replay("http_parser", asyncloop::http::fuzz_support::parser);
}

#[test]
fn http_response_corpus() {
    replay(
        "http_response",
        asyncloop::http::fuzz_support::response_parser,
    );
}

#[test]
fn http_server_corpus() {
    replay("http_server", asyncloop::http::fuzz_support::server);
}

#[test]
fn tls_server_corpus() {
    replay("tls_server", asyncloop::net::tls::fuzz_support::server);
}

#[test]
fn http_connection_corpus() {
    replay("http_connection", asyncloop::http::fuzz_support::connection);
}

/// The step-driven harness really talks to the server: pipelined requests answered in order
/// (one on the next loop turn, one large enough to meet backpressure), sent in small pieces
/// between loop turns and partial reads, then the 400 that ends the connection.
#[test]
fn connection_harness_sees_real_answers() {
    let payload: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    // Send 8 bytes, run a turn, read 64 bytes: over and over.
    let schedule: Vec<u8> = [7 << 3, 2, 4].repeat(20);
    let mut input = vec![schedule.len() as u8];
    input.extend(&schedule);
    input.extend(payload);
    let out = asyncloop::http::fuzz_support::connection_output(&input).expect("not reset");
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "200", "400"], "{text}");
    assert!(text.contains("\r\n\r\nnext"), "{text}");
    assert!(
        text.matches('b').count() >= 20000,
        "the large answer is whole"
    );
    asyncloop::http::fuzz_support::connection(&input);
}

#[test]
fn server_harness_sees_real_answers() {
    let out = asyncloop::http::fuzz_support::server_output(
        b"GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["202", "200", "400"], "{text}");
    assert!(
        text.ends_with("400 Bad Request: exactly one Host header is required\n"),
        "{text}"
    );
}

#[test]
fn ws_frame_corpus() {
    replay("ws_frame", asyncloop::http::ws::fuzz_reader);
}
