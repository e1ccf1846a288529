//! `ASYNCLOOP_BACKEND` overrides the backend asked for in the options. Its own test binary:
//! the environment is process-wide.

use asyncloop::error::Error;
use asyncloop::reactor::{Backend, Loop, LoopOptions};

#[test]
fn environment_overrides_the_requested_backend() {
    let opts = |backend| LoopOptions {
        backend,
        queue_depth: 64,
    };
    std::env::set_var("ASYNCLOOP_BACKEND", "epoll");
    assert_eq!(
        Loop::new(opts(Backend::Uring)).unwrap().backend(),
        Backend::Epoll
    );
    assert_eq!(
        Loop::new(opts(Backend::Auto)).unwrap().backend(),
        Backend::Epoll
    );
    std::env::set_var("ASYNCLOOP_BACKEND", "uring");
    assert_eq!(
        Loop::new(opts(Backend::Epoll)).unwrap().backend(),
        Backend::Uring
    );
    std::env::set_var("ASYNCLOOP_BACKEND", "bogus");
    assert_eq!(Loop::new(opts(Backend::Auto)).err(), Some(Error::INVALID));
    std::env::remove_var("ASYNCLOOP_BACKEND");
    assert_eq!(
        Loop::new(opts(Backend::Epoll)).unwrap().backend(),
        Backend::Epoll
    );
}
