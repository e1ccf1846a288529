//! The `Date` header value (IMF-fixdate), formatted at most once per second per thread; every
//! loop runs on its own thread, so this is once per second per loop.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
pub(crate) const DATE_LEN: usize = 29;

thread_local! {
    static CACHE: Cell<(Option<Instant>, [u8; DATE_LEN])> = const { Cell::new((None, [0; DATE_LEN])) };
}

/// The current date for a response; `now` is the loop's cached time for this turn.
pub fn http_date(now: Instant) -> [u8; DATE_LEN] {
    CACHE.with(|c| {
        let (valid_until, text) = c.get();
        if valid_until.is_some_and(|v| now < v) {
            return text;
        }
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let text = format_imf_fixdate(since_epoch.as_secs());
        // Valid until the next whole second.
        let left = Duration::from_secs(1) - Duration::from_nanos(since_epoch.subsec_nanos() as u64);
        c.set((Some(now + left), text));
        text
    })
}

/// A `Date` cache owned by one user (a server on its loop): like `http_date`, formatted at most
/// once per second, without the thread-local lookup that `http_date` makes on every call.
#[derive(Default)]
pub struct DateCache {
    cached: Cell<(Option<Instant>, [u8; DATE_LEN])>,
}

impl DateCache {
    /// The current date for a response; `now` is the loop's cached time for this turn.
    pub fn get(&self, now: Instant) -> [u8; DATE_LEN] {
        let (valid_until, text) = self.cached.get();
        if valid_until.is_some_and(|v| now < v) {
            return text;
        }
        let text = http_date(now);
        // The thread's cache knows when this text stops being current.
        let until = CACHE.with(|c| c.get().0);
        self.cached.set((until, text));
        text
    }
}

/// Formats a Unix time as an IMF-fixdate.
pub fn format_imf_fixdate(unix: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix / 86400;
    let secs = unix % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as u64;
    let mut out = [0u8; DATE_LEN];
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(secs / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(secs / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(secs % 60));
    out[25..29].copy_from_slice(b" GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(
            &format_imf_fixdate(784111777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&format_imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_imf_fixdate(951782400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_imf_fixdate(1795219200),
            b"Sat, 21 Nov 2026 00:00:00 GMT"
        );
    }

    #[test]
    fn a_date_cache_agrees_with_the_thread_cache() {
        let cache = DateCache::default();
        let t0 = Instant::now();
        let first = cache.get(t0);
        assert_eq!(first, http_date(t0));
        assert_eq!(cache.get(t0), first);
        std::thread::sleep(Duration::from_millis(1100));
        let t1 = Instant::now();
        assert_ne!(cache.get(t1), first, "refreshed after a second");
        assert_eq!(cache.get(t1), http_date(t1));
    }

    #[test]
    fn cached_within_a_second_and_refreshed_after() {
        let t0 = Instant::now();
        let a = http_date(t0);
        assert_eq!(http_date(t0), a);
        std::thread::sleep(Duration::from_millis(1100));
        assert_ne!(http_date(Instant::now()), a);
    }
}
