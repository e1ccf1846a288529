//! Routes: by method and exact path, by path prefix (longest first), and a fallback. A route
//! without a method takes any method; HEAD falls back to GET. A path that matches with another
//! method only gives 405 and the `Allow` list. A route says how its requests' bodies arrive:
//! collected before the handler runs, or streamed to it as they arrive.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::parser::BodyMode;
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
    handler: Handler,
    body: BodyMode,
}

/// An Fx-style hash (as rustc's FxHasher: rotate, xor, multiply, eight bytes at a time):
/// routes are the application's own strings, so the table needs no defence against chosen
/// collisions, and SipHash would cost more than the rest of the lookup (it runs for every
/// request).
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

/// The routing table of a server.
#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Vec<Entry>, BuildHasherDefault<Fx>>,
    prefixes: Vec<(String, Vec<Entry>)>,
    fallback: Option<Handler>,
    /// The paths with a streaming route (few), so that a request's body mode is known at its
    /// head without routing it twice: only these paths are routed there.
    streaming_paths: Vec<String>,
}

fn pick(entries: &[Entry], method: &str) -> Result<Route, String> {
    let find = |m: &str| {
        entries
            .iter()
            .find(|e| e.method.as_deref().is_none_or(|em| em == m))
    };
    if let Some(e) = find(method) {
        return Ok(Route::Found(e.handler.clone(), e.body));
    }
    if method == "HEAD" {
        if let Some(e) = find("GET") {
            return Ok(Route::Found(e.handler.clone(), e.body));
        }
    }
    let mut allow: Vec<&str> = entries.iter().filter_map(|e| e.method.as_deref()).collect();
    if allow.contains(&"GET") && !allow.contains(&"HEAD") {
        allow.push("HEAD");
    }
    Err(allow.join(", "))
}

impl Router {
    /// Adds a route for `path` exactly; `method` None takes any method.
    pub fn exact(&mut self, method: Option<&str>, path: &str, handler: Handler, body: BodyMode) {
        let entries = self.exact.entry(path.to_string()).or_default();
        entries.retain(|e| e.method.as_deref() != method);
        entries.push(Entry {
            method: method.map(str::to_string),
            handler,
            body,
        });
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
        let entries = &mut self.prefixes[i].1;
        entries.retain(|e| e.method.as_deref() != method);
        entries.push(Entry {
            method: method.map(str::to_string),
            handler,
            body,
        });
    }

    /// The handler for requests no route takes (instead of 404/405).
    pub fn fallback(&mut self, handler: Handler) {
        self.fallback = Some(handler);
    }

    /// Finds the handler for `method` and `path`.
    pub fn resolve(&self, method: &str, path: &str) -> Route {
        let mut not_allowed = None;
        if let Some(entries) = self.exact.get(path) {
            match pick(entries, method) {
                Ok(r) => return r,
                Err(allow) => not_allowed = Some(allow),
            }
        }
        if not_allowed.is_none() {
            for (p, entries) in &self.prefixes {
                if path.starts_with(p.as_str()) {
                    match pick(entries, method) {
                        Ok(r) => return r,
                        Err(allow) => {
                            not_allowed = Some(allow);
                            break;
                        }
                    }
                }
            }
        }
        if let Some(f) = &self.fallback {
            return Route::Found(f.clone(), BodyMode::Buffer);
        }
        match not_allowed {
            Some(allow) => Route::MethodNotAllowed(allow),
            None => Route::NotFound,
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
