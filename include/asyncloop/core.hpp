// asyncloop/core.hpp: part of asyncloop.hpp (include that). Errors, loops, timers and signal handles.
#ifndef ASYNCLOOP_CORE_HPP
#define ASYNCLOOP_CORE_HPP

#include "../asyncloop.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace aloop {

/// An error code from the C API, with its message.
class Error : public std::runtime_error {
  public:
    explicit Error(int code, const std::string &what = "")
        : std::runtime_error((what.empty() ? "" : what + ": ") + aloop_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }
    const char *name() const noexcept { return aloop_err_name(code_); }

  private:
    int code_;
};

/// Throws `Error` for a negative return code; returns it otherwise.
inline int check(int rc, const char *what = "") {
    if (rc < 0)
        throw Error(rc, what);
    return rc;
}

namespace detail {
template <class F> void delete_fn(void *p) { delete static_cast<F *>(p); }
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};

inline void report(const char *where) noexcept {
    try {
        throw;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "asyncloop: exception in %s callback: %s\n", where, e.what());
    } catch (...) {
        std::fprintf(stderr, "asyncloop: unknown exception in %s callback\n", where);
    }
}
} // namespace detail

/// An event loop, owned. One per thread; `post` and `stop` may be called from any thread.
class Loop {
  public:
    enum class Backend { Auto = ALOOP_BACKEND_AUTO, Uring = ALOOP_BACKEND_URING, Epoll = ALOOP_BACKEND_EPOLL };

    explicit Loop(Backend backend = Backend::Auto, uint32_t queue_depth = 0) {
        aloop_loop_options_t o;
        aloop_loop_options_init(&o);
        o.backend = static_cast<int>(backend);
        if (queue_depth)
            o.queue_depth = queue_depth;
        check(aloop_loop_new(&o, &loop_), "aloop_loop_new");
    }
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;
    ~Loop() {
        if (loop_ && aloop_loop_free(loop_) != 0)
            std::fprintf(stderr, "asyncloop: loop destroyed with open handles (leaked)\n");
    }

    aloop_loop_t *get() const noexcept { return loop_; }
    /// Runs until stopped or idle; returns whether anything is still active.
    bool run(int mode = ALOOP_RUN_DEFAULT) { return check(aloop_loop_run(loop_, mode), "aloop_loop_run") == 1; }
    /// Thread-safe.
    void stop() { check(aloop_loop_stop(loop_), "aloop_loop_stop"); }
    /// Runs `fn` on the loop's thread. Thread-safe.
    void post(std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_loop_post(
            loop_,
            [](aloop_loop_t *, void *ud) {
                try {
                    (*static_cast<F *>(ud))();
                } catch (...) {
                    detail::report("post");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_loop_post");
        }
    }
    Backend backend() const { return static_cast<Backend>(aloop_loop_backend(loop_)); }
    const char *backend_name() const { return aloop_backend_name(aloop_loop_backend(loop_)); }

  private:
    aloop_loop_t *loop_ = nullptr;
};

/// A timer, owned; the callback may be any callable.
class Timer {
  public:
    explicit Timer(Loop &loop) { check(aloop_timer_new(loop.get(), &t_), "aloop_timer_new"); }
    Timer(const Timer &) = delete;
    Timer &operator=(const Timer &) = delete;
    ~Timer() { aloop_timer_free(t_); }

    void start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_timer_start(
            t_, timeout_ms, repeat_ms,
            [](aloop_timer_t *, void *ud) {
                try {
                    (*static_cast<F *>(ud))();
                } catch (...) {
                    detail::report("timer");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_timer_start");
        }
    }
    void stop() { aloop_timer_stop(t_); }
    bool active() const { return aloop_timer_is_active(t_) == 1; }

  private:
    aloop_timer_t *t_ = nullptr;
};

/// A signal handle, owned (see aloop_signal_start): `fn(signum)` runs on the loop's thread
/// after the process receives the signal, whichever thread the kernel picked. Several
/// deliveries before the loop turns may be one call. The destructor stops it; the last
/// started handle of a signal puts back the action that was there before. A started handle
/// keeps `Loop::run` going.
class Signal {
  public:
    explicit Signal(Loop &loop) { check(aloop_signal_new(loop.get(), &s_), "aloop_signal_new"); }
    /// A handle started on `signum` at once.
    Signal(Loop &loop, int signum, std::function<void(int)> fn) : Signal(loop) {
        try {
            start(signum, std::move(fn));
        } catch (...) {
            aloop_signal_free(s_);
            throw;
        }
    }
    Signal(const Signal &) = delete;
    Signal &operator=(const Signal &) = delete;
    ~Signal() { aloop_signal_free(s_); }

    /// Starts or restarts watching `signum` with `fn`; throws `Error` (ALOOP_E_INVALID for a
    /// signal that cannot be watched, with aloop_last_error_message in the text).
    void start(int signum, std::function<void(int)> fn) {
        using F = std::function<void(int)>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_signal_start(
            s_, signum,
            [](aloop_signal_t *, int n, void *ud) {
                try {
                    (*static_cast<F *>(ud))(n);
                } catch (...) {
                    detail::report("signal");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, rc == ALOOP_E_INVALID ? aloop_last_error_message() : "aloop_signal_start");
        }
    }
    void stop() { aloop_signal_stop(s_); }
    /// The watched signal, 0 when stopped.
    int signum() const { return aloop_signal_signum(s_); }
    aloop_signal_t *get() const noexcept { return s_; }

  private:
    aloop_signal_t *s_ = nullptr;
};

} // namespace aloop

#endif
