//! Routes: by method and exact path, by path prefix (longest first), and a fallback. A route
//! without a method takes any method; HEAD falls back to GET. A path that matches with another
//! method only gives 405 and the `Allow` list.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::server::Request;

/// A request handler. It owns the request and must answer it exactly once, now or later.
pub type Handler = Rc<dyn Fn(Request)>;

/// The result of routing.
pub enum Route {
    Found(Handler),
    NotFound,
    /// The path exists for other methods: the `Allow` header's value.
    MethodNotAllowed(String),
}

struct Entry {
    method: Option<String>,
    handler: Handler,
}

/// FNV-1a: routes are the application's own strings, so the table needs no defence against
/// chosen collisions, and SipHash would cost more than the rest of the lookup (it runs for
/// every request).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The routing table of a server.
#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Vec<Entry>, BuildHasherDefault<Fnv>>,
    prefixes: Vec<(String, Vec<Entry>)>,
    fallback: Option<Handler>,
}

fn pick(entries: &[Entry], method: &str) -> Result<Handler, String> {
    let find = |m: &str| {
        entries
            .iter()
            .find(|e| e.method.as_deref().is_none_or(|em| em == m))
    };
    if let Some(e) = find(method) {
        return Ok(e.handler.clone());
    }
    if method == "HEAD" {
        if let Some(e) = find("GET") {
            return Ok(e.handler.clone());
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
    pub fn exact(&mut self, method: Option<&str>, path: &str, handler: Handler) {
        let entries = self.exact.entry(path.to_string()).or_default();
        entries.retain(|e| e.method.as_deref() != method);
        entries.push(Entry {
            method: method.map(str::to_string),
            handler,
        });
    }

    /// Adds a route for every path starting with `prefix`.
    pub fn prefix(&mut self, method: Option<&str>, prefix: &str, handler: Handler) {
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
                Ok(h) => return Route::Found(h),
                Err(allow) => not_allowed = Some(allow),
            }
        }
        if not_allowed.is_none() {
            for (p, entries) in &self.prefixes {
                if path.starts_with(p.as_str()) {
                    match pick(entries, method) {
                        Ok(h) => return Route::Found(h),
                        Err(allow) => {
                            not_allowed = Some(allow);
                            break;
                        }
                    }
                }
            }
        }
        if let Some(f) = &self.fallback {
            return Route::Found(f.clone());
        }
        match not_allowed {
            Some(allow) => Route::MethodNotAllowed(allow),
            None => Route::NotFound,
        }
    }
}
