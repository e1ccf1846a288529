//! Routes: by method and exact path, by path prefix (longest first), and a fallback. A route
//! without a method takes any method; HEAD falls back to GET. A path that matches with another
//! method only gives 405 and the `Allow` list. A route says how its requests' bodies arrive:
//! collected before the handler runs, or streamed to it as they arrive.
//!
//! Exact paths are found by length first, then compared a word at a time (a handful of routes
//! of each length is the common case); a table with many routes of one length uses a hash map
//! instead. Parsed requests are matched by llhttp's method code, not by name.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::parser;
use super::parser::BodyMode;
use super::request::RequestData;
use super::server::Request;

/// A request handler. It owns the request and must answer it exactly once, now or later.
pub type Handler = Rc<dyn Fn(Request)>;

/// The result of routing.
pub enum Route {
    /// The handler, and how its requests' bodies arrive.
    Found(Handler, BodyMode),
    NotFound,
    /// The path exists for other methods: the `Allow` header's value.
    MethodNotAllowed(String),
}

impl Route {
    /// How the body of a request that takes this route arrives (the server's own answers
    /// collect it, bounded by `max_body`).
    pub fn body_mode(&self) -> BodyMode {
        match self {
            Route::Found(_, mode) => *mode,
            _ => BodyMode::Buffer,
        }
    }
}

struct Entry {
    method: Option<String>,
    /// llhttp's code for `method` (None: a method llhttp does not parse, which no parsed
    /// request has).
    code: Option<u8>,
    handler: Handler,
    body: BodyMode,
}

/// A request's method, as a parsed request has it (llhttp's code) or by name.
#[derive(Clone, Copy)]
enum Method<'a> {
    Code(u8),
    Name(&'a str),
}

impl Method<'_> {
    const HEAD: u8 = 2;
    const GET: u8 = 1;

    fn is_head(self) -> bool {
        match self {
            Method::Code(c) => c == Self::HEAD,
            Method::Name(n) => n == "HEAD",
        }
    }

    fn get() -> Method<'static> {
        Method::Code(Self::GET)
    }

    fn matches(self, e: &Entry) -> bool {
        match (self, &e.method) {
            (_, None) => true,
            (Method::Code(c), Some(_)) => e.code == Some(c),
            (Method::Name(n), Some(m)) => m == n,
        }
    }
}

/// An Fx-style hash (as rustc's FxHasher: rotate, xor, multiply, eight bytes at a time):
/// routes are the application's own strings, so the table needs no defence against chosen
/// collisions.
#[derive(Clone, Copy, Default)]
struct Fx(u64);

impl Fx {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("chunks of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Routes of one length past which a length's routes are found by hash.
const MAX_SCAN: usize = 8;

/// The exact-path routes.
#[derive(Default)]
struct Exact {
    /// Sorted by path length.
    routes: Vec<(Box<[u8]>, Vec<Entry>)>,
    /// `routes[by_len[n]..by_len[n + 1]]` have paths of `n` bytes.
    by_len: Vec<usize>,
    /// Path to index in `routes`, when some length has more than `MAX_SCAN` routes.
    map: Option<HashMap<Box<[u8]>, usize, BuildHasherDefault<Fx>>>,
}

/// Whether `a` and `b`, of the same length, are equal: by the first and last eight bytes up
/// to 16 bytes, which covers them all, without a call.
fn same(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8) && (n <= 16 || a == b)
}

impl Exact {
    fn entries_mut(&mut self, path: &str) -> &mut Vec<Entry> {
        let i = match self
            .routes
            .iter()
            .position(|(p, _)| **p == *path.as_bytes())
        {
            Some(i) => i,
            None => {
                self.routes.push((path.as_bytes().into(), Vec::new()));
                self.routes.sort_by_key(|(p, _)| p.len());
                self.reindex();
                self.routes
                    .iter()
                    .position(|(p, _)| **p == *path.as_bytes())
                    .expect("just added")
            }
        };
        &mut self.routes[i].1
    }

    fn reindex(&mut self) {
        let longest = self.routes.last().map_or(0, |(p, _)| p.len());
        self.by_len = (0..=longest + 1)
            .map(|n| self.routes.partition_point(|(p, _)| p.len() < n))
            .collect();
        let crowded = self.by_len.windows(2).any(|w| w[1] - w[0] > MAX_SCAN);
        self.map = crowded.then(|| {
            self.routes
                .iter()
                .enumerate()
                .map(|(i, (p, _))| (p.clone(), i))
                .collect()
        });
    }

    fn get(&self, path: &[u8]) -> Option<&[Entry]> {
        if let Some(map) = &self.map {
            return map.get(path).map(|&i| &self.routes[i].1[..]);
        }
        let n = path.len();
        let (&start, &end) = (self.by_len.get(n)?, self.by_len.get(n + 1)?);
        self.routes[start..end]
            .iter()
            .find(|(p, _)| same(p, path))
            .map(|(_, e)| &e[..])
    }
}

/// The routing table of a server.
#[derive(Default)]
pub struct Router {
    exact: Exact,
    prefixes: Vec<(String, Vec<Entry>)>,
    fallback: Option<Handler>,
    /// The paths with a streaming route (few), so that a request's body mode is known at its
    /// head without routing it twice: only these paths are routed there.
    streaming_paths: Vec<String>,
}

/// The route of the first entry that takes `method` (HEAD: else the first for GET).
#[inline]
fn pick(entries: &[Entry], method: Method<'_>) -> Option<Route> {
    let find = |m: Method<'_>| entries.iter().find(|e| m.matches(e));
    let found = |e: &Entry| Route::Found(e.handler.clone(), e.body);
    match find(method) {
        Some(e) => Some(found(e)),
        None if method.is_head() => find(Method::get()).map(found),
        None => None,
    }
}

/// The `Allow` list of a path's entries (none took the method).
#[cold]
fn allow_list(entries: &[Entry]) -> String {
    let mut allow: Vec<&str> = entries.iter().filter_map(|e| e.method.as_deref()).collect();
    if allow.contains(&"GET") && !allow.contains(&"HEAD") {
        allow.push("HEAD");
    }
    allow.join(", ")
}

fn add(entries: &mut Vec<Entry>, method: Option<&str>, handler: Handler, body: BodyMode) {
    entries.retain(|e| e.method.as_deref() != method);
    entries.push(Entry {
        method: method.map(str::to_string),
        code: method.and_then(parser::method_code),
        handler,
        body,
    });
}

impl Router {
    /// Adds a route for `path` exactly; `method` None takes any method.
    pub fn exact(&mut self, method: Option<&str>, path: &str, handler: Handler, body: BodyMode) {
        let entries = self.exact.entries_mut(path);
        add(entries, method, handler, body);
        let streams = entries.iter().any(|e| e.body != BodyMode::Buffer);
        self.streaming_paths.retain(|p| p != path);
        if streams {
            self.streaming_paths.push(path.to_string());
        }
    }

    /// How the body of a request for `method` and `path` arrives: cheap for every path
    /// without a streaming route (the common case), a full look-up for the others.
    pub fn body_mode(&self, method: &str, path: &str) -> BodyMode {
        if !self.streaming_paths.iter().any(|p| p == path) {
            return BodyMode::Buffer;
        }
        self.resolve(method, path).body_mode()
    }

    /// Adds a route for every path starting with `prefix`.
    pub fn prefix(&mut self, method: Option<&str>, prefix: &str, handler: Handler, body: BodyMode) {
        let i = match self.prefixes.iter().position(|(p, _)| p == prefix) {
            Some(i) => i,
            None => {
                self.prefixes.push((prefix.to_string(), Vec::new()));
                self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
                self.prefixes.iter().position(|(p, _)| p == prefix).unwrap()
            }
        };
        add(&mut self.prefixes[i].1, method, handler, body);
    }

    /// The handler for requests no route takes (instead of 404/405).
    pub fn fallback(&mut self, handler: Handler) {
        self.fallback = Some(handler);
    }

    /// Finds the handler for `method` and `path`.
    pub fn resolve(&self, method: &str, path: &str) -> Route {
        self.find(Method::Name(method), path.as_bytes())
    }

    /// Finds the handler for a parsed request (by its method code and path).
    pub(crate) fn resolve_request(&self, req: &RequestData) -> Route {
        let path = &req.arena[req.path.clone()];
        match req.method_code {
            Some(code) => self.find(Method::Code(code), path),
            None => self.find(Method::Name(req.method()), path),
        }
    }

    #[inline]
    fn find(&self, method: Method<'_>, path: &[u8]) -> Route {
        match self.exact.get(path) {
            Some(entries) => match pick(entries, method) {
                Some(r) => r,
                None => self.not_allowed(entries),
            },
            None => self.find_prefix(method, path),
        }
    }

    /// No exact route: the longest prefix that takes the path, else the fallback or 404.
    #[inline(never)]
    fn find_prefix(&self, method: Method<'_>, path: &[u8]) -> Route {
        for (p, entries) in &self.prefixes {
            if path.starts_with(p.as_bytes()) {
                return match pick(entries, method) {
                    Some(r) => r,
                    None => self.not_allowed(entries),
                };
            }
        }
        match &self.fallback {
            Some(f) => Route::Found(f.clone(), BodyMode::Buffer),
            None => Route::NotFound,
        }
    }

    /// The path's routes do not take the method: the fallback, else 405.
    #[cold]
    fn not_allowed(&self, entries: &[Entry]) -> Route {
        match &self.fallback {
            Some(f) => Route::Found(f.clone(), BodyMode::Buffer),
            None => Route::MethodNotAllowed(allow_list(entries)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler of its own (the tests only look at which handler a route gives).
    fn handler() -> Handler {
        Rc::new(|_req| {})
    }

    fn same(route: Route, h: &Handler) -> bool {
        matches!(route, Route::Found(f, _) if Rc::ptr_eq(&f, h))
    }

    #[test]
    fn exact_routes_of_every_length_and_methods() {
        let mut r = Router::default();
        let paths: Vec<String> = (0..20).map(|n| format!("/{}", "p".repeat(n))).collect();
        let handlers: Vec<Handler> = paths
            .iter()
            .map(|p| {
                let h = handler();
                r.exact(Some("GET"), p, h.clone(), BodyMode::Buffer);
                h
            })
            .collect();
        for (p, h) in paths.iter().zip(&handlers) {
            assert!(same(r.resolve("GET", p), h), "{p}");
            assert!(same(r.resolve("HEAD", p), h), "HEAD falls back to GET: {p}");
            match r.resolve("POST", p) {
                Route::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD"),
                _ => panic!("POST {p} should be 405"),
            }
        }
        assert!(matches!(r.resolve("GET", "/q"), Route::NotFound));
        assert!(matches!(r.resolve("GET", "/pp/"), Route::NotFound));
        // A route without a method takes every method; a later one for the same method and
        // path replaces the earlier one.
        let any = handler();
        r.exact(None, "/any", any.clone(), BodyMode::Buffer);
        assert!(same(r.resolve("DELETE", "/any"), &any));
        let again = handler();
        r.exact(Some("GET"), "/p", again.clone(), BodyMode::Buffer);
        assert!(same(r.resolve("GET", "/p"), &again));
    }

    #[test]
    fn paths_of_one_length_differing_anywhere() {
        // Few routes of a length (scanned) and many (hashed); paths that differ in one byte
        // at every position, for lengths around the eight-byte words of the comparison.
        for crowd in [1, MAX_SCAN + 2] {
            for len in [1, 7, 8, 9, 15, 16, 17, 24, 40] {
                let mut r = Router::default();
                let path = |i: usize, at: usize| {
                    let mut p = vec![b'a'; len];
                    p[0] = b'/';
                    if at > 0 {
                        p[at] = b'b' + (i % 20) as u8;
                    }
                    String::from_utf8(p).unwrap()
                };
                let mut want = Vec::new();
                for at in 1..len {
                    for i in 0..crowd {
                        let h = handler();
                        r.exact(Some("GET"), &path(i, at), h.clone(), BodyMode::Buffer);
                        want.push((path(i, at), h));
                    }
                }
                assert_eq!(r.exact.map.is_some(), want.len() > MAX_SCAN);
                for (p, h) in &want {
                    assert!(same(r.resolve("GET", p), h), "{p}");
                }
                assert!(matches!(r.resolve("GET", &path(0, 0)), Route::NotFound));
                assert!(matches!(
                    r.resolve("GET", &format!("{}a", path(0, 0))),
                    Route::NotFound
                ));
            }
        }
    }

    #[test]
    fn parsed_requests_match_by_method_code() {
        let mut r = Router::default();
        let get = handler();
        let purge = handler();
        let any = handler();
        r.exact(Some("GET"), "/x", get.clone(), BodyMode::Buffer);
        r.exact(Some("PURGE"), "/x", purge.clone(), BodyMode::Buffer);
        r.exact(Some("FOO"), "/x", handler(), BodyMode::Buffer); // not a method llhttp parses
        r.exact(None, "/any", any.clone(), BodyMode::Buffer);
        let req = |method: &str, path: &str| {
            let mut d = RequestData::default();
            d.clear();
            d.arena.extend_from_slice(method.as_bytes());
            d.method = 0..method.len();
            d.method_code = parser::method_code(method);
            let at = d.arena.len();
            d.arena.extend_from_slice(path.as_bytes());
            d.path = at..d.arena.len();
            d
        };
        assert_eq!(parser::method_code("GET"), Some(1));
        assert_eq!(parser::method_code("QUERY"), Some(46));
        assert_eq!(parser::method_code("M-SEARCH"), Some(24));
        assert_eq!(parser::method_code("get"), None);
        assert!(same(r.resolve_request(&req("GET", "/x")), &get));
        assert!(same(r.resolve_request(&req("HEAD", "/x")), &get));
        assert!(same(r.resolve_request(&req("PURGE", "/x")), &purge));
        assert!(same(r.resolve_request(&req("COPY", "/any")), &any));
        match r.resolve_request(&req("POST", "/x")) {
            Route::MethodNotAllowed(allow) => assert_eq!(allow, "GET, PURGE, FOO, HEAD"),
            _ => panic!("POST /x should be 405"),
        }
        // A request without a code (not from the parser) is matched by name.
        let mut d = req("FOO", "/x");
        d.method_code = None;
        assert!(!matches!(
            r.resolve_request(&d),
            Route::NotFound | Route::MethodNotAllowed(_)
        ));
    }

    #[test]
    fn prefixes_longest_first_then_fallback() {
        let mut r = Router::default();
        let short = handler();
        let long = handler();
        r.prefix(None, "/api/", short.clone(), BodyMode::Buffer);
        r.prefix(
            None,
            "/api/v2/",
            long.clone(),
            BodyMode::Stream { limit: 5 },
        );
        assert!(same(r.resolve("GET", "/api/x"), &short));
        assert!(same(r.resolve("GET", "/api/v2/x"), &long));
        assert_eq!(
            r.resolve("GET", "/api/v2/x").body_mode(),
            BodyMode::Stream { limit: 5 }
        );
        assert_eq!(r.resolve("GET", "/api/x").body_mode(), BodyMode::Buffer);
        assert!(matches!(r.resolve("GET", "/other"), Route::NotFound));
        let fb = handler();
        r.fallback(fb.clone());
        assert!(same(r.resolve("GET", "/other"), &fb));
    }

    #[test]
    fn body_modes_follow_the_route_a_request_takes() {
        let mut r = Router::default();
        let stream = BodyMode::Stream { limit: 9 };
        r.exact(Some("POST"), "/up", handler(), stream);
        r.exact(Some("GET"), "/up", handler(), BodyMode::Buffer);
        r.exact(None, "/any", handler(), stream);
        assert_eq!(r.body_mode("POST", "/up"), stream);
        assert_eq!(r.body_mode("GET", "/up"), BodyMode::Buffer);
        assert_eq!(r.body_mode("PUT", "/up"), BodyMode::Buffer); // 405: the server answers
        assert_eq!(r.body_mode("PATCH", "/any"), stream);
        assert_eq!(r.body_mode("POST", "/other"), BodyMode::Buffer);
        // Replaced by a buffered route: no longer streamed.
        r.exact(Some("POST"), "/up", handler(), BodyMode::Buffer);
        assert_eq!(r.body_mode("POST", "/up"), BodyMode::Buffer);
    }
}
