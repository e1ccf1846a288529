//! A connection's working state (parser, pipeline, unwritten output), lent from the server's
//! pool while the connection is busy, and the pool of request storage.

use std::collections::VecDeque;

use super::connection::{Conn, ConnSink, Pending};
use super::ServerInner;
use crate::http::parser::RequestParser;
use crate::http::request::RequestData;
use crate::reactor::Token;

/// Request storage kept for reuse per server (see `recycle_data`).
const DATA_POOL: usize = 256;

/// A connection's working state: the parser, the pipeline of unanswered requests and the
/// output not yet written. Lent from the server's pool while the connection has a request in
/// progress or responses pending, so an idle connection holds none.
pub(super) struct ConnWork {
    /// Taken out while it parses (its sink reaches the rest of this struct).
    pub(super) parser: Option<RequestParser<ConnSink>>,
    pub(super) pipeline: VecDeque<Pending>,
    /// Response bytes ready to be written, in order.
    pub(super) out: Vec<u8>,
    /// The request whose body is streaming in (its slot, which may be answered already).
    pub(super) streaming: Option<Token>,
    /// Input held back while a streamed body waits for its reader (at most one read's worth).
    pub(super) unparsed: Vec<u8>,
}

impl ServerInner {
    /// Ends the request a connection's parser is in the middle of (its storage returns to the
    /// pool); the parser starts over.
    pub(super) fn drop_parser(&self, conn: &Conn) {
        if let Some(p) = conn
            .work
            .borrow_mut()
            .as_mut()
            .and_then(|w| w.parser.as_mut())
        {
            self.restart_parser(p);
        }
    }

    /// Puts a parser back at the start of a request; a request it was in the middle of
    /// returns its storage to the pool.
    fn restart_parser(&self, p: &mut RequestParser<ConnSink>) {
        if let Some(partial) = p.take_partial() {
            self.recycle_data(partial);
        }
        p.reset_unless_clean();
    }

    /// A connection's working state, lent from the pool on first need.
    pub(super) fn work<'a>(&self, conn: &'a Conn) -> std::cell::RefMut<'a, ConnWork> {
        std::cell::RefMut::map(conn.work.borrow_mut(), |w| {
            &mut **w.get_or_insert_with(|| {
                let pooled = self.work_pool.borrow_mut().pop();
                pooled.unwrap_or_else(|| {
                    Box::new(ConnWork {
                        parser: Some(RequestParser::new(self.opts.limits)),
                        pipeline: VecDeque::new(),
                        out: Vec::new(),
                        streaming: None,
                        unparsed: Vec::new(),
                    })
                })
            })
        })
    }

    /// Returns a connection's working state to the pool once it has nothing in progress: no
    /// partial request, no pending response, no unwritten output (an idle connection may stay
    /// idle for long).
    pub(super) fn release_work(&self, conn: &Conn) {
        let idle = conn.work.borrow().as_ref().is_some_and(|w| {
            w.parser.as_ref().is_some_and(|p| !p.in_request())
                && w.pipeline.is_empty()
                && w.out.is_empty()
                && w.unparsed.is_empty()
        });
        if idle {
            let w = conn.work.borrow_mut().take();
            self.recycle_work(w);
        }
    }

    /// Keeps working state for the next busy connection, up to `DATA_POOL` of them.
    pub(super) fn recycle_work(&self, w: Option<Box<ConnWork>>) {
        let Some(mut w) = w else { return };
        self.lp.recycle_buffer(std::mem::take(&mut w.out));
        if w.unparsed.capacity() > 0 {
            self.lp.recycle_buffer(std::mem::take(&mut w.unparsed));
        }
        w.streaming = None;
        if !w.pipeline.is_empty() {
            for e in w.pipeline.drain(..) {
                self.lp.recycle_buffer(e.buf);
            }
        }
        let Some(p) = w.parser.as_mut() else { return };
        self.restart_parser(p);
        let mut pool = self.work_pool.borrow_mut();
        if pool.len() < DATA_POOL {
            if w.pipeline.capacity() > 16 {
                w.pipeline = VecDeque::new();
            }
            pool.push(w);
        }
    }

    /// Keeps request storage for reuse, up to `DATA_POOL` of them: the pool serves steady
    /// traffic without allocating, but does not keep a burst's peak forever. (The parser
    /// clears it when it takes it for the next request.)
    pub(super) fn recycle_data(&self, mut d: Box<RequestData>) {
        let mut pool = self.data_pool.borrow_mut();
        if pool.len() < DATA_POOL {
            d.trim();
            pool.push(d);
        }
    }
}
