// Shared by the integration tests: one test function per backend.

/// Turns each `fn NAME(backend)` into the tests `uring::NAME` and `epoll::NAME`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::$name(asyncloop::reactor::Backend::Uring) })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name(asyncloop::reactor::Backend::Epoll) })*
        }
    };
}

pub fn new_loop(b: asyncloop::reactor::Backend) -> asyncloop::reactor::Loop {
    let lp = asyncloop::reactor::Loop::new(asyncloop::reactor::LoopOptions {
        backend: b,
        queue_depth: 1024,
    })
    .expect("create loop");
    assert_eq!(lp.backend(), b);
    lp
}
