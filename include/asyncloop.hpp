// asyncloop.hpp: a header-only C++17 layer over asyncloop.h.
//
// RAII owners for loops, timers and HTTP servers; lambdas as callbacks (stored on the heap and
// freed by the library's user-data destructor; an exception escaping a callback is caught at
// the trampoline and reported on stderr, never thrown through C); a move-only Responder that
// answers its request exactly once (500 if it is destroyed unanswered), reads a streamed body
// (Responder::read_body) or starts a ChunkedResponse, which ends once (paced by on_drain);
// a client's streamed responses (HttpClient::request_stream) with pause and resume.
//
// The classes live in include/asyncloop/, one file per concern, each including the one before
// it; this header includes them all and is the one to include.
#ifndef ASYNCLOOP_HPP
#define ASYNCLOOP_HPP

#include "asyncloop/websocket.hpp"

#endif
