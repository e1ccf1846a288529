//! C handles. Every pointer the C API hands out (`aloop_timer_t *`, `aloop_http_request_t *`,
//! ...) is a generational id into one process-wide table, never the address of a Rust object,
//! and this module is the only place where a handle becomes a reference. A stale, double-freed
//! or foreign handle is refused with `ALOOP_E_STALE` (never a crash, never a write to freed
//! memory); a loop-bound handle used from a thread other than the one running its loop is
//! refused with `ALOOP_E_WRONG_THREAD`, before anything is touched.
//!
//! A handle value: the entry's index in the low `INDEX_BITS` bits, its generation above.
//! Generations are odd while the entry is live and even while it is free, so no value is 0
//! (NULL). A thread reuses an entry only after `QUARANTINE` others it freed, so one slot's
//! 2^37 generations outlast any process.
//!
//! Threads: entries are read and written with atomics only, so a lookup from any thread is
//! free of data races. The object behind an entry is reached only after the thread check:
//! while its loop runs, only from the thread inside `aloop_loop_run`; while it does not, from
//! the one thread the application uses it from (a loop may be created on one thread and run on
//! another, like a libuv loop). Only that thread frees handles, so the object cannot vanish
//! during the call that checked it. The thread-safe calls (`remote_of`) never reach the object:
//! they get the loop's `Remote` from a registry of their own.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::reactor::Remote;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("C handles are 64-bit values carried in pointers");

const INDEX_BITS: u32 = 26;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const PAGE_BITS: u32 = 10;
const PAGE_LEN: usize = 1 << PAGE_BITS;
const MAX_PAGES: usize = 1 << (INDEX_BITS - PAGE_BITS);
/// Entries a thread frees before it reuses the first of them.
const QUARANTINE: usize = 256;
/// Entries moved at once between a thread's free list and the global one.
const BATCH: usize = 64;
/// The bit of a loop's `link` that says `aloop_loop_run` is running.
const RUNNING: u64 = 1;

/// What a handle is; a handle passed to a function of another kind is stale there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Kind {
    Loop = 1,
    Timer,
    Poll,
    Tcp,
    TcpListener,
    HttpServer,
    HttpRequest,
    HttpPrepared,
    HttpClient,
    HttpResponse,
    PgPool,
    PgResult,
    PgTxn,
    PgCopy,
    PgListener,
    TlsServerConfig,
    TlsClientConfig,
    WebSocket,
    Signal,
}

/// A Rust value handed to C as `*mut Self::C` (an opaque type; often `Self`).
pub(crate) trait Handle: Sized + 'static {
    /// The C type the handle points to, as the header names it.
    type C;
    /// The kind its entries carry.
    const KIND: Kind;
}

/// The handle value of a loop, recorded by the handles bound to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LoopId(u64);

impl LoopId {
    /// For handles bound to no loop (TLS configurations): usable from any thread.
    pub(crate) const UNBOUND: LoopId = LoopId(0);

    /// The loop's C handle.
    pub(crate) fn as_ptr<C>(self) -> *mut C {
        self.0 as *mut C
    }
}

struct Entry {
    /// Odd while live, even while free; bumped at every allocation and free.
    gen: AtomicU64,
    kind: AtomicU32,
    /// A loop-bound entry: its loop's handle value. A loop: its owner thread's id (the thread
    /// running it, or the last one that ran or created it) shifted left once, with `RUNNING`.
    link: AtomicU64,
    /// The payload: a `Box<T>` pointer for typed handles, two words for inline ones.
    words: [AtomicU64; 2],
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            gen: AtomicU64::new(0),
            kind: AtomicU32::new(0),
            link: AtomicU64::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

/// Pages of entries, made on first need and never freed or moved.
static PAGES: [AtomicPtr<Entry>; MAX_PAGES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_PAGES];

struct GlobalFree {
    free: Vec<u32>,
    pages: usize,
}

static GLOBAL: Mutex<GlobalFree> = Mutex::new(GlobalFree {
    free: Vec::new(),
    pages: 0,
});

/// Live loops' remotes, for the thread-safe calls (they never touch the loop itself).
static REMOTES: RwLock<Vec<(u64, Arc<Remote>)>> = RwLock::new(Vec::new());

fn entry(index: u32) -> Option<&'static Entry> {
    let page = PAGES
        .get(index as usize >> PAGE_BITS)?
        .load(Ordering::Acquire);
    if page.is_null() {
        return None;
    }
    // SAFETY: a non-null page is a leaked array of PAGE_LEN entries that is never freed, and
    // the offset is below PAGE_LEN.
    Some(unsafe { &*page.add(index as usize & (PAGE_LEN - 1)) })
}

impl GlobalFree {
    /// Gives up to `BATCH` free indices to `put`, making a page when none is free.
    fn take_batch(&mut self, mut put: impl FnMut(u32)) {
        if self.free.is_empty() {
            assert!(
                self.pages < MAX_PAGES,
                "asyncloop: more than 2^26 live handles"
            );
            let page: Box<[Entry]> = (0..PAGE_LEN).map(|_| Entry::empty()).collect();
            let base = (self.pages * PAGE_LEN) as u32;
            PAGES[self.pages].store(Box::leak(page).as_mut_ptr(), Ordering::Release);
            self.pages += 1;
            self.free
                .extend((0..PAGE_LEN as u32).rev().map(|i| base + i));
        }
        let n = self.free.len().min(BATCH);
        for i in self.free.drain(self.free.len() - n..) {
            put(i);
        }
    }
}

/// Room in a thread's free list: more than it ever holds (`QUARANTINE + 2 * BATCH + 1`).
const RING: usize = 512;
const _: () = assert!(RING.is_power_of_two() && RING > QUARANTINE + 2 * BATCH + 1);

/// A thread's free entries, oldest first (a ring of `RING` indices from `head`, `len` of them,
/// allocated at the first free or refill); given back to the global list when the thread ends.
struct LocalFree {
    ring: Vec<u32>,
    head: usize,
    len: usize,
}

impl LocalFree {
    const fn new() -> LocalFree {
        LocalFree {
            ring: Vec::new(),
            head: 0,
            len: 0,
        }
    }

    fn pop(&mut self) -> u32 {
        if self.len <= QUARANTINE {
            self.refill();
        }
        let i = self.ring[self.head];
        self.head = (self.head + 1) & (RING - 1);
        self.len -= 1;
        i
    }

    fn push(&mut self, index: u32) {
        if self.ring.is_empty() {
            self.ring = vec![0; RING];
        }
        self.ring[(self.head + self.len) & (RING - 1)] = index;
        self.len += 1;
        if self.len > QUARANTINE + 2 * BATCH {
            self.spill();
        }
    }

    /// Puts a batch from the global list in front (the next ones taken), so the entries this
    /// thread freed stay behind them: at least `QUARANTINE` of them stay here.
    #[cold]
    fn refill(&mut self) {
        if self.ring.is_empty() {
            self.ring = vec![0; RING];
        }
        GLOBAL.lock().take_batch(|i| {
            self.head = (self.head + RING - 1) & (RING - 1);
            self.ring[self.head] = i;
            self.len += 1;
        });
        assert!(self.len > 0, "take_batch gives at least one index");
    }

    /// Gives the oldest `BATCH` back to the global list.
    #[cold]
    fn spill(&mut self) {
        let mut g = GLOBAL.lock();
        for _ in 0..BATCH {
            g.free.push(self.ring[self.head]);
            self.head = (self.head + 1) & (RING - 1);
            self.len -= 1;
        }
    }
}

impl Drop for LocalFree {
    fn drop(&mut self) {
        let mut g = GLOBAL.lock();
        for k in 0..self.len {
            g.free.push(self.ring[(self.head + k) & (RING - 1)]);
        }
        self.len = 0;
    }
}

thread_local! {
    static LOCAL: RefCell<LocalFree> = const { RefCell::new(LocalFree::new()) };
}

/// This thread's id for the thread checks: its `pthread_t`, never 0, unique among running
/// threads (a thread-local would cost a `__tls_get_addr` call per check in a shared library,
/// and every C call checks).
fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

fn alloc_index() -> u32 {
    LOCAL
        .try_with(|l| l.borrow_mut().pop())
        .unwrap_or_else(|_| {
            // This thread's list is gone (a handle made by a thread-local destructor).
            let mut g = GLOBAL.lock();
            let mut one = Vec::new();
            g.take_batch(|i| one.push(i));
            let i = one.pop().expect("a batch is never empty");
            g.free.extend(one);
            i
        })
}

fn free_index(index: u32) {
    if LOCAL.try_with(|l| l.borrow_mut().push(index)).is_err() {
        GLOBAL.lock().free.push(index);
    }
}

fn split(raw: u64) -> (u32, u64) {
    ((raw & INDEX_MASK) as u32, raw >> INDEX_BITS)
}

/// Allocates an entry (not yet visible: its generation stays even) and returns the handle value
/// it will have once published.
fn reserve_raw(kind: Kind, link: u64) -> (u64, &'static Entry) {
    let index = alloc_index();
    let e = entry(index).expect("allocated indices have pages");
    let gen = e.gen.load(Ordering::Relaxed) + 1;
    e.kind.store(kind as u32, Ordering::Relaxed);
    e.link.store(link, Ordering::Relaxed);
    ((gen << INDEX_BITS) | index as u64, e)
}

/// Makes a reserved entry live with `words`.
fn publish(raw: u64, e: &Entry, words: [u64; 2]) {
    e.words[0].store(words[0], Ordering::Relaxed);
    e.words[1].store(words[1], Ordering::Relaxed);
    e.gen.store(split(raw).1, Ordering::Release);
}

/// Frees the entry of a live `raw` (the caller checked it).
fn retire(raw: u64, e: &Entry) {
    let (index, gen) = split(raw);
    e.words[0].store(0, Ordering::Relaxed);
    e.words[1].store(0, Ordering::Relaxed);
    e.gen.store(gen + 1, Ordering::Release);
    free_index(index);
}

/// The live entry of `raw` if it has `kind`: gives its payload words. No thread check.
fn live(raw: u64, kind: Kind) -> Result<(&'static Entry, [u64; 2])> {
    let (index, gen) = split(raw);
    if gen & 1 == 0 {
        return Err(Error::STALE);
    }
    let e = entry(index).ok_or(Error::STALE)?;
    if e.gen.load(Ordering::Acquire) != gen || e.kind.load(Ordering::Relaxed) != kind as u32 {
        return Err(Error::STALE);
    }
    let words = [
        e.words[0].load(Ordering::Relaxed),
        e.words[1].load(Ordering::Relaxed),
    ];
    // A free and reuse between the two loads would have moved the generation on.
    if e.gen.load(Ordering::Acquire) != gen {
        return Err(Error::STALE);
    }
    Ok((e, words))
}

/// The owner word of the loop `raw` (thread id << 1 | RUNNING), 0 when the loop is gone.
fn loop_owner(loop_raw: u64) -> u64 {
    match live(loop_raw, Kind::Loop) {
        Ok((e, _)) => e.link.load(Ordering::Acquire),
        Err(_) => 0,
    }
}

/// The owner word of the loop of the handle whose entry is `e` (of `kind`).
fn owner_of(e: &Entry, kind: Kind) -> u64 {
    if kind == Kind::Loop {
        e.link.load(Ordering::Acquire)
    } else {
        loop_owner(e.link.load(Ordering::Relaxed))
    }
}

/// Checks that this thread may use the handle whose entry is `e` (of `kind`): any thread while
/// its loop is not running, only the running one while it is.
fn check_thread(e: &Entry, kind: Kind) -> Result<()> {
    let owner = owner_of(e, kind);
    if owner & RUNNING == 0 || owner >> 1 == thread_id() {
        Ok(())
    } else {
        Err(Error::WRONG_THREAD)
    }
}

/// The live, thread-checked entry of handle `h`.
fn checked(raw: u64, kind: Kind) -> Result<(&'static Entry, [u64; 2])> {
    if raw == 0 {
        return Err(Error::NULL_ARG);
    }
    let (e, words) = live(raw, kind)?;
    check_thread(e, kind)?;
    Ok((e, words))
}

// ---- typed handles (a boxed Rust value) ---------------------------------------------------

/// Hands `value` to C as a handle bound to `lp`.
pub(crate) fn register<T: Handle>(lp: LoopId, value: Box<T>) -> *mut T::C {
    let (raw, e) = reserve_raw(T::KIND, lp.0);
    publish(raw, e, [Box::into_raw(value) as u64, 0]);
    raw as *mut T::C
}

/// Runs `f` on the value behind `h`. `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
/// `f` must not free `h` (no capi function frees a handle while it borrows it).
pub(crate) fn with<T: Handle, R>(h: *const T::C, f: impl FnOnce(&T) -> R) -> Result<R> {
    let (_, words) = checked(h as u64, T::KIND)?;
    // SAFETY: a live entry of T's kind holds a `Box<T>` pointer, and the thread check passed,
    // so only this thread could free it, which it does not do while `f` runs.
    Ok(f(unsafe { &*(words[0] as *const T) }))
}

/// Like `with`, for accessors without an error return: `fallback` for a bad handle.
pub(crate) fn read<T: Handle, R>(h: *const T::C, fallback: R, f: impl FnOnce(&T) -> R) -> R {
    with(h, f).unwrap_or(fallback)
}

/// Retires `h` and gives its value back (to drop, or to finish closing).
pub(crate) fn take<T: Handle>(h: *const T::C) -> Result<Box<T>> {
    let raw = h as u64;
    let (e, words) = checked(raw, T::KIND)?;
    retire(raw, e);
    // SAFETY: the entry held this Box<T> pointer and is retired now, so nothing else can reach
    // it; ownership returns here.
    Ok(unsafe { Box::from_raw(words[0] as *mut T) })
}

/// A handle value known before its object exists (a callback made with it must be created
/// first). Lookups give `ALOOP_E_STALE` until `fill`.
pub(crate) struct Reserved<T: Handle> {
    raw: u64,
    entry: &'static Entry,
    _t: PhantomData<T>,
}

/// Reserves a handle of `T` bound to `lp`.
pub(crate) fn reserve<T: Handle>(lp: LoopId) -> Reserved<T> {
    let (raw, entry) = reserve_raw(T::KIND, lp.0);
    Reserved {
        raw,
        entry,
        _t: PhantomData,
    }
}

impl<T: Handle> Reserved<T> {
    /// The handle value it will have.
    pub(crate) fn handle(&self) -> *mut T::C {
        self.raw as *mut T::C
    }

    /// Publishes the handle with its value.
    pub(crate) fn fill(self, value: Box<T>) -> *mut T::C {
        publish(self.raw, self.entry, [Box::into_raw(value) as u64, 0]);
        self.raw as *mut T::C
    }
}

impl<T: Handle> Drop for Reserved<T> {
    fn drop(&mut self) {
        if self.entry.gen.load(Ordering::Relaxed) != split(self.raw).1 {
            // Never published: skip the generation it would have had, then free the entry.
            self.entry
                .gen
                .store(split(self.raw).1 + 1, Ordering::Release);
            free_index(split(self.raw).0);
        }
    }
}

// ---- inline handles (two words, no allocation) --------------------------------------------

/// Registers a handle of `kind` bound to `lp` whose payload is two words (no allocation; the
/// caller gives the words their meaning and owns what they refer to).
pub(crate) fn register_inline(kind: Kind, lp: LoopId, words: [u64; 2]) -> u64 {
    let (raw, e) = reserve_raw(kind, lp.0);
    publish(raw, e, words);
    raw
}

/// The payload of a live inline handle, thread-checked.
pub(crate) fn inline_words(raw: u64, kind: Kind) -> Result<[u64; 2]> {
    checked(raw, kind).map(|(_, w)| w)
}

/// The loop a live handle of `kind` is bound to, thread-checked.
pub(crate) fn bound_loop(raw: u64, kind: Kind) -> Result<LoopId> {
    let (e, _) = checked(raw, kind)?;
    Ok(LoopId(e.link.load(Ordering::Relaxed)))
}

/// Retires a live inline handle that this same call already checked for this thread, giving
/// back its payload: only its generation is checked again (a callback run meanwhile may have
/// retired it).
pub(crate) fn retire_inline_checked(raw: u64, kind: Kind) -> Result<[u64; 2]> {
    let (e, words) = live(raw, kind)?;
    retire(raw, e);
    Ok(words)
}

// ---- loops --------------------------------------------------------------------------------

/// Registers a loop handle, owned by this thread until another runs it; `remote` serves its
/// thread-safe calls.
pub(crate) fn register_loop<T: Handle>(value: Box<T>, remote: Arc<Remote>) -> *mut T::C {
    debug_assert_eq!(T::KIND, Kind::Loop);
    let (raw, e) = reserve_raw(Kind::Loop, thread_id() << 1);
    REMOTES.write().push((raw, remote));
    publish(raw, e, [Box::into_raw(value) as u64, 0]);
    raw as *mut T::C
}

/// The id of a loop handle, for the handles bound to it.
pub(crate) fn loop_id<C>(h: *const C) -> LoopId {
    LoopId(h as u64)
}

/// Retires a loop handle and drops its remote from the registry.
pub(crate) fn take_loop<T: Handle>(h: *const T::C) -> Result<Box<T>> {
    let value = take::<T>(h)?;
    REMOTES.write().retain(|(raw, _)| *raw != h as u64);
    Ok(value)
}

/// Marks the loop as running on this thread, which becomes its owner, until the guard drops.
/// `ALOOP_E_ALREADY` when this thread already runs it (a nested run), `ALOOP_E_WRONG_THREAD`
/// when another does.
pub(crate) fn enter_run<C>(h: *const C) -> Result<RunGuard> {
    let raw = h as u64;
    if raw == 0 {
        return Err(Error::NULL_ARG);
    }
    let (e, _) = live(raw, Kind::Loop)?;
    let me = thread_id();
    let mut owner = e.link.load(Ordering::Acquire);
    loop {
        if owner & RUNNING != 0 {
            return Err(if owner >> 1 == me {
                Error::ALREADY
            } else {
                Error::WRONG_THREAD
            });
        }
        match e.link.compare_exchange_weak(
            owner,
            me << 1 | RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(RunGuard(e)),
            Err(now) => owner = now,
        }
    }
}

/// Ends a loop's run when `aloop_loop_run` returns; the running thread stays its owner.
pub(crate) struct RunGuard(&'static Entry);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.link.fetch_and(!RUNNING, Ordering::Release);
    }
}

/// Whether the loop `h` is running on this thread.
pub(crate) fn runs_here<C>(h: *const C) -> Result<bool> {
    let (e, _) = live(h as u64, Kind::Loop)?;
    Ok(e.link.load(Ordering::Acquire) == thread_id() << 1 | RUNNING)
}

// ---- thread-safe access -------------------------------------------------------------------

/// From any thread: the payload of a live inline handle when this thread owns its loop (the
/// same test as `remote_of`'s), so the work may be done directly; `None` when another thread
/// does (then post it through `remote_of`). Cheaper than `remote_of` for the common case of a
/// call on the loop's own thread: no registry lock, no reference count.
pub(crate) fn inline_words_here(raw: u64, kind: Kind) -> Result<Option<[u64; 2]>> {
    if raw == 0 {
        return Err(Error::NULL_ARG);
    }
    let (e, words) = live(raw, kind)?;
    Ok((owner_of(e, kind) >> 1 == thread_id()).then_some(words))
}

/// From any thread: the remote of the loop of handle `raw` (a loop itself, or bound to one),
/// for posting work to it, and whether this thread owns that loop (runs it, or ran it last or
/// created it and no other runs it now): then the work may be done directly instead.
/// `ALOOP_E_STALE` for a stale handle, `ALOOP_E_CLOSED` when its loop is gone. Never touches
/// the handle's object.
pub(crate) fn remote_of(raw: u64, kind: Kind) -> Result<(Arc<Remote>, bool)> {
    if raw == 0 {
        return Err(Error::NULL_ARG);
    }
    let (e, _) = live(raw, kind)?;
    let loop_raw = if kind == Kind::Loop {
        raw
    } else {
        e.link.load(Ordering::Relaxed)
    };
    let here = loop_owner(loop_raw) >> 1 == thread_id();
    let remotes = REMOTES.read();
    let remote = remotes
        .iter()
        .find(|(r, _)| *r == loop_raw)
        .map(|(_, remote)| remote.clone())
        .ok_or(Error::CLOSED)?;
    Ok((remote, here))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing(u32);
    impl Handle for Thing {
        type C = Thing;
        const KIND: Kind = Kind::Timer;
    }
    struct Other;
    impl Handle for Other {
        type C = Other;
        const KIND: Kind = Kind::Poll;
    }

    const NO_LOOP: LoopId = LoopId(0);

    #[test]
    fn stale_and_foreign_handles_are_refused() {
        let h = register(NO_LOOP, Box::new(Thing(7)));
        assert_eq!(with(h, |t: &Thing| t.0), Ok(7));
        assert_eq!(
            with::<Other, _>(h.cast(), |_| ()).unwrap_err(),
            Error::STALE
        );
        assert_eq!(take::<Thing>(h).map(|b| b.0), Ok(7));
        assert_eq!(take::<Thing>(h).map(|_| ()), Err(Error::STALE));
        assert_eq!(with(h, |t: &Thing| t.0), Err(Error::STALE));
        assert_eq!(
            with::<Thing, _>(std::ptr::null(), |_| ()),
            Err(Error::NULL_ARG)
        );
        assert_eq!(
            with::<Thing, _>(0x1234_5678 as *const Thing, |_| ()),
            Err(Error::STALE)
        );
    }

    #[test]
    fn a_freed_entry_is_reused_only_after_the_quarantine() {
        let first = register(NO_LOOP, Box::new(Thing(0)));
        let (index, _) = split(first as u64);
        drop(take::<Thing>(first).unwrap());
        let mut later = Vec::new();
        for i in 0..QUARANTINE as u32 {
            let h = register(NO_LOOP, Box::new(Thing(i)));
            assert_ne!(split(h as u64).0, index, "reused after {i}");
            later.push(h);
        }
        for h in later {
            drop(take::<Thing>(h).unwrap());
        }
        assert_eq!(with(first, |t: &Thing| t.0), Err(Error::STALE));
    }

    #[test]
    fn bound_handles_follow_their_loop_thread() {
        struct FakeLoop;
        impl Handle for FakeLoop {
            type C = FakeLoop;
            const KIND: Kind = Kind::Loop;
        }
        let remote = Arc::new(Remote::new().unwrap());
        let lp = register_loop(Box::new(FakeLoop), remote);
        let id = loop_id(lp);
        let t = register(id, Box::new(Thing(1)));
        let raw = t as u64;
        // Not running: any thread may use it.
        let other = std::thread::spawn(move || with(raw as *const Thing, |t: &Thing| t.0));
        assert_eq!(other.join().unwrap(), Ok(1));
        let guard = enter_run(lp).unwrap();
        assert_eq!(enter_run(lp).map(|_| ()), Err(Error::ALREADY));
        assert_eq!(with(t, |t: &Thing| t.0), Ok(1));
        let lp_raw = lp as u64;
        let other = std::thread::spawn(move || {
            (
                with(raw as *const Thing, |t: &Thing| t.0),
                take::<Thing>(raw as *const Thing).map(|_| ()),
                enter_run(lp_raw as *const FakeLoop).map(|_| ()),
                remote_of(raw, Kind::Timer).map(|(_, here)| here),
            )
        });
        assert_eq!(
            other.join().unwrap(),
            (
                Err(Error::WRONG_THREAD),
                Err(Error::WRONG_THREAD),
                Err(Error::WRONG_THREAD),
                Ok(false)
            )
        );
        assert_eq!(remote_of(raw, Kind::Timer).map(|(_, h)| h), Ok(true));
        drop(guard);
        drop(take::<Thing>(t).unwrap());
        drop(take_loop::<FakeLoop>(lp).unwrap());
        assert_eq!(
            remote_of(lp as u64, Kind::Loop).map(|_| ()),
            Err(Error::STALE)
        );
    }

    #[test]
    fn reserved_handles_are_stale_until_filled() {
        let r = reserve::<Thing>(NO_LOOP);
        let h = r.handle();
        assert_eq!(with(h, |t: &Thing| t.0), Err(Error::STALE));
        assert_eq!(r.fill(Box::new(Thing(3))), h);
        assert_eq!(with(h, |t: &Thing| t.0), Ok(3));
        drop(take::<Thing>(h).unwrap());
        let r = reserve::<Thing>(NO_LOOP);
        let h = r.handle();
        drop(r);
        assert_eq!(with(h, |t: &Thing| t.0), Err(Error::STALE));
    }
}
