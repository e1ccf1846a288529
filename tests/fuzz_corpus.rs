//! Replays the fuzz corpora under `fuzz/corpus/` and the inputs that once failed under
//! `fuzz/regressions/` (kept apart: corpus minimization may drop them) through the same
//! harnesses the fuzz targets use, so `make test` keeps every one of them passing.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| harness(&data));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n >= 10, "{target}: only {n} corpus files");
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
