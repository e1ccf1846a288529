//! Routes: by method and exact path, by path prefix (longest first), and a fallback. A route
//! without a method takes any method; HEAD falls back to GET. A path that matches with another
//! method only gives 405 and the `Allow` list. A route says how its requests' bodies arrive:
//! collected before the handler runs, or streamed to it as they arrive.

use std::collections::HashMap;
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

/// The routing table of a server.
#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Vec<Entry>>,
    prefixes: Vec<(String, Vec<Entry>)>,
    fallback: Option<Handler>,
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
