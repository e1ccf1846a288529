//! Reconnect delays: 100 ms doubling to 5 s, each jittered to 75%..125% so that many
//! connections that broke together do not come back together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const MIN: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

pub(crate) struct Backoff {
    step: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        // Seeded apart: the time, and a counter so that backoffs made together differ.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ SEQ
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Backoff {
            step: MIN,
            rng: seed | 1,
        }
    }

    /// After a success: the next failure waits the shortest delay again.
    pub(crate) fn reset(&mut self) {
        self.step = MIN;
    }

    /// The delay before the next attempt; the one after it doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.step;
        self.step = (self.step * 2).min(MAX);
        // xorshift64: enough to spread attempts.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let jitter = 750 + x % 501;
        base * jitter as u32 / 1000
    }
}
