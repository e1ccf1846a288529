//! The forms a request-target may take (RFC 9112 section 3.2), checked once llhttp has checked
//! its bytes: origin-form (`/path?query`) and absolute-form (`scheme://host[:port]/path?query`,
//! with a host and without userinfo) for every method but CONNECT; authority-form
//! (`host:port`) for CONNECT, and only for it; asterisk-form (`*`) for OPTIONS only. A fragment
//! (`#`) belongs to none of them. Anything else is a 400.

use std::ops::Range;

use super::parser::HttpError;

/// Where the path and the query are in a checked target. `path` is `None` for an
/// absolute-form target with an empty path, which stands for "/".
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TargetParts {
    pub path: Option<Range<usize>>,
    pub query: Range<usize>,
}

const INVALID: HttpError = HttpError::new(400, "invalid request target");

/// Checks `target` against the forms `method` allows; returns its path and query.
pub(crate) fn check(method: &[u8], target: &[u8]) -> Result<TargetParts, HttpError> {
    let end = target.len();
    if target.first() == Some(&b'/') && method != b"CONNECT" {
        // origin-form, nearly every request: finds the query and refuses a fragment (what the
        // general path below does in three passes).
        let q = find_query_or_fragment(target);
        if q < end && target[q] == b'#' {
            return Err(HttpError::new(400, "fragment in request target"));
        }
        if q == end {
            return Ok(TargetParts {
                path: Some(0..end),
                query: end..end,
            });
        }
        if target[q + 1..].contains(&b'#') {
            return Err(HttpError::new(400, "fragment in request target"));
        }
        return Ok(TargetParts {
            path: Some(0..q),
            query: q + 1..end,
        });
    }
    if method == b"CONNECT" {
        return if host_port(target, true) {
            Ok(TargetParts {
                path: Some(0..end),
                query: end..end,
            })
        } else {
            Err(HttpError::new(400, "CONNECT needs a host:port target"))
        };
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(TargetParts {
                path: Some(0..end),
                query: end..end,
            })
        } else {
            Err(HttpError::new(400, "* is a target for OPTIONS only"))
        };
    }
    if target.contains(&b'#') {
        return Err(HttpError::new(400, "fragment in request target"));
    }
    if target.first() == Some(&b'/') {
        return Ok(split_query(target, 0));
    }
    absolute_form(target).ok_or(INVALID)
}

/// The index of the first `?` or `#` in `t` (`t.len()` when there is none), eight bytes at a
/// time.
fn find_query_or_fragment(t: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while i + 8 <= t.len() {
        let x = u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
        // Exact for whether a byte is '?' or '#' (a borrow can only mark bytes above the
        // first zero byte); the byte itself is then found one by one.
        if has_zero(x ^ (ONES * b'?' as u64)) | has_zero(x ^ (ONES * b'#' as u64)) != 0 {
            break;
        }
        i += 8;
    }
    t[i..]
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .map_or(t.len(), |j| i + j)
}

/// The path from `path_start` to the first `?`, the query after it.
fn split_query(t: &[u8], path_start: usize) -> TargetParts {
    let q = t[path_start..].iter().position(|&b| b == b'?');
    let (path_end, query) = match q {
        Some(i) => (path_start + i, path_start + i + 1..t.len()),
        None => (t.len(), t.len()..t.len()),
    };
    TargetParts {
        path: (path_end > path_start).then_some(path_start..path_end),
        query,
    }
}

/// `scheme "://" authority path-abempty ["?" query]`.
fn absolute_form(t: &[u8]) -> Option<TargetParts> {
    let sep = t.windows(3).position(|w| w == b"://")?;
    let scheme = &t[..sep];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let start = sep + 3;
    let end = t[start..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?'))
        .map_or(t.len(), |i| start + i);
    (scheme_ok && host_port(&t[start..end], false)).then(|| split_query(t, end))
}

/// `host [":" port]` with a non-empty host (a bracketed IP literal, or a name or IPv4 address
/// of unreserved, sub-delim and percent-encoded bytes) and a decimal port; with `port_required`,
/// a port of 1 to 5 digits up to 65535 (authority-form). Userinfo (`@`) is refused.
fn host_port(a: &[u8], port_required: bool) -> bool {
    let (host, port) = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &a[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        match &a[close + 1..] {
            [] => (&a[..=close], None),
            [b':', port @ ..] => (&a[..=close], Some(port)),
            _ => return false,
        }
    } else {
        match a.iter().rposition(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let host_ok = host.first() == Some(&b'[') || (!host.is_empty() && reg_name(host));
    let port_ok = match port {
        None => !port_required,
        Some(p) if port_required => {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
        }
        Some(p) => p.iter().all(u8::is_ascii_digit),
    };
    host_ok && port_ok
}

/// `*( unreserved / pct-encoded / sub-delims )` (RFC 3986 reg-name; covers IPv4 addresses).
fn reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        match h[i] {
            b'%' => {
                if !(i + 2 < h.len()
                    && h[i + 1].is_ascii_hexdigit()
                    && h[i + 2].is_ascii_hexdigit())
                {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(method: &str, t: &str) -> (Option<String>, String) {
        let p = check(method.as_bytes(), t.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {t}: {e:?}"));
        (p.path.map(|r| t[r].to_string()), t[p.query].to_string())
    }

    fn refused(method: &str, t: &str) -> bool {
        check(method.as_bytes(), t.as_bytes()).is_err_and(|e| e.status == 400)
    }

    #[test]
    fn origin_form() {
        assert_eq!(ok("GET", "/a/b?x=1"), (Some("/a/b".into()), "x=1".into()));
        assert_eq!(ok("GET", "/"), (Some("/".into()), "".into()));
        assert_eq!(ok("POST", "//h"), (Some("//h".into()), "".into()));
        assert_eq!(ok("GET", "/?"), (Some("/".into()), "".into()));
        assert_eq!(ok("GET", "/p?a?b"), (Some("/p".into()), "a?b".into()));
        assert!(refused("GET", "/a#frag"));
        assert!(refused("GET", "/a?b#c"));
        assert!(refused("GET", ""));
        assert!(refused("GET", "abc"));
    }

    #[test]
    fn query_and_fragment_found_at_every_position() {
        for len in 1..40 {
            for pos in 1..len {
                for (b, want) in [(b'?', true), (b'#', false)] {
                    let mut t = vec![b'a'; len];
                    t[0] = b'/';
                    t[pos] = b;
                    let t = String::from_utf8(t).unwrap();
                    match check(b"GET", t.as_bytes()) {
                        Ok(p) if want => {
                            assert_eq!(p.path, Some(0..pos), "{t}");
                            assert_eq!(p.query, pos + 1..len, "{t}");
                        }
                        Err(e) if !want => assert_eq!(e.status, 400, "{t}"),
                        other => panic!("{t}: {other:?}"),
                    }
                }
            }
            let t = format!("/{}", "b".repeat(len));
            assert_eq!(ok("GET", &t), (Some(t.clone()), "".into()));
            let t = format!("/{}?{}#", "b".repeat(len), "c".repeat(len));
            assert!(refused("GET", &t), "{t}");
        }
    }

    #[test]
    fn absolute_form() {
        assert_eq!(ok("GET", "http://h/x?q"), (Some("/x".into()), "q".into()));
        assert_eq!(ok("GET", "http://h:8080/x"), (Some("/x".into()), "".into()));
        assert_eq!(
            ok("GET", "http://[::1]:80/x"),
            (Some("/x".into()), "".into())
        );
        assert_eq!(ok("GET", "https://h.example"), (None, "".into()));
        assert_eq!(ok("GET", "http://h?q"), (None, "q".into()));
        assert_eq!(
            ok("GET", "http://10.0.0.1:/"),
            (Some("/".into()), "".into())
        );
        for t in [
            "http://",
            "http:///x",
            "http://:80/x",
            "http://u@h/x",
            "http://h:8x/",
            "http://[]/",
            "http://[::1/",
            "http://[::1]x/",
            "1http://h/",
            "://h/",
            "http://h/x#f",
            "http://h%zz/",
        ] {
            assert!(refused("GET", t), "{t}");
        }
    }

    #[test]
    fn authority_form_is_for_connect_only_and_always() {
        assert_eq!(ok("CONNECT", "h:443"), (Some("h:443".into()), "".into()));
        assert_eq!(ok("CONNECT", "[::1]:443").0, Some("[::1]:443".into()));
        assert_eq!(
            ok("CONNECT", "10.0.0.1:65535").0,
            Some("10.0.0.1:65535".into())
        );
        for t in [
            "",
            "h",
            "h:",
            ":1",
            "h:99999",
            "h:123456",
            "h:1/x",
            "u@h:1",
            "http://h:1/",
            "/",
            "*",
            "[::1]",
            "h:1?q",
            "h:+1",
        ] {
            assert!(refused("CONNECT", t), "{t}");
        }
        assert!(refused("GET", "h:1"));
    }

    #[test]
    fn asterisk_form_is_for_options_only() {
        assert_eq!(ok("OPTIONS", "*"), (Some("*".into()), "".into()));
        assert!(refused("GET", "*"));
        assert!(refused("OPTIONS", "*x"));
        assert!(refused("OPTIONS", "*/"));
        assert_eq!(ok("OPTIONS", "/x").0, Some("/x".into()));
    }
}
