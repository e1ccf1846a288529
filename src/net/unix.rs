//! The file of a Unix socket listener: a stale one, left by a server that died, is replaced; a
//! live one (something accepts on it) is not; the listener removes its own file when it closes
//! (if the file is still the one it made). Listeners of one process that ask for `reuse_port`
//! share one listening socket per path (`Shared`): SO_REUSEPORT does not spread a Unix
//! socket's connections, so each loop accepts from the same socket instead, and the file goes
//! when the last of them closes.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::addr::SockAddr;
use super::socket;
use crate::error::{Error, Result};

/// The socket file a listener made: its path and identity.
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::INVALID)
}

fn lstat(path: &CString) -> std::result::Result<libc::stat, i32> {
    // SAFETY: an all-zero stat is a valid value for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable stat.
    if unsafe { libc::lstat(path.as_ptr(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(st)
}

fn is_abstract(path: &Path) -> bool {
    path.as_os_str().as_bytes().starts_with(b"@")
}

/// Makes `path` free to bind: nothing there is fine; a socket nobody accepts on (connect is
/// refused) is a stale one and is removed. `EADDRINUSE` when something listens there,
/// `EEXIST` when the path is not a socket.
pub(crate) fn clear_stale(path: &Path, sa: &SockAddr) -> Result<()> {
    if is_abstract(path) {
        return Ok(()); // no file: the kernel frees the name with its last socket
    }
    let c = c_path(path)?;
    let st = match lstat(&c) {
        Ok(st) => st,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::from_errno(e)),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Error::from_errno(libc::EEXIST));
    }
    let probe = socket::unix_socket()?;
    // SAFETY: a valid socket and an address of sa.len bytes.
    let r = unsafe { libc::connect(probe.as_raw_fd(), sa.as_ptr(), sa.len) };
    let e = if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    match e {
        libc::ECONNREFUSED => {
            // SAFETY: a NUL-terminated path.
            if unsafe { libc::unlink(c.as_ptr()) } < 0 {
                let e = Error::last_os_error();
                if e != Error::from_errno(libc::ENOENT) {
                    return Err(e);
                }
            }
            Ok(())
        }
        // Accepted, or its backlog is full: a live server.
        0 | libc::EAGAIN | libc::EINPROGRESS => Err(Error::from_errno(libc::EADDRINUSE)),
        e => Err(Error::from_errno(e)),
    }
}

impl SocketFile {
    /// Records the file just bound at `path` (None for an abstract name).
    pub(crate) fn bound(path: &Path) -> Option<SocketFile> {
        if is_abstract(path) {
            return None;
        }
        let st = lstat(&c_path(path).ok()?).ok()?;
        Some(SocketFile {
            path: path.to_path_buf(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Removes the file if it is still the one bound (not replaced by another server since).
    pub(crate) fn remove(&self) {
        let Ok(c) = c_path(&self.path) else { return };
        if let Ok(st) = lstat(&c) {
            if st.st_dev == self.dev && st.st_ino == self.ino {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::unlink(c.as_ptr()) };
            }
        }
    }
}

/// One listening Unix socket shared by listeners on any loops of this process: each listener
/// accepts on a duplicate of `fd`; `fd` closes and the file goes when the last listener drops
/// its `Arc`.
pub(crate) struct Shared {
    name: PathBuf,
    fd: OwnedFd,
    file: Option<SocketFile>,
}

/// The shared sockets of this process; dead entries are swept at each insertion. Held while a
/// shared listener binds, so two loops binding one path at once make one socket, not two.
static SHARED: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EMFILE)))
}

impl Shared {
    /// The listening socket this process has at `path` (a duplicate of it, for one more
    /// listener), or else a new one from `bind` (a listening socket and the file it made),
    /// registered for the next listener.
    pub(crate) fn listen(
        path: &Path,
        bind: impl FnOnce() -> Result<(OwnedFd, Option<SocketFile>)>,
    ) -> Result<(OwnedFd, Arc<Shared>)> {
        let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let found = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.name == path && s.still_bound());
        if let Some(s) = found {
            return Ok((dup(&s.fd)?, s));
        }
        let (fd, file) = bind()?;
        let kept = match dup(&fd) {
            Ok(k) => k,
            Err(e) => {
                if let Some(f) = &file {
                    f.remove();
                }
                return Err(e);
            }
        };
        let s = Arc::new(Shared {
            name: path.to_path_buf(),
            fd: kept,
            file,
        });
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&s));
        Ok((fd, s))
    }

    /// Whether the path still names the socket this bound (not removed, or replaced by
    /// another server's).
    fn still_bound(&self) -> bool {
        let Some(f) = &self.file else {
            return true; // an abstract name lives as long as the socket
        };
        match c_path(&f.path).map(|c| lstat(&c)) {
            Ok(Ok(st)) => st.st_dev == f.dev && st.st_ino == f.ino,
            _ => false,
        }
    }
}

impl Drop for Shared {
    // Takes no lock: it may run while `listen` holds `SHARED`.
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            f.remove();
        }
    }
}

/// Who removes a Unix listener's socket file when it closes.
pub(crate) enum FileOwner {
    /// The listener alone.
    Own(SocketFile),
    /// The last listener of a shared socket.
    Shared(Arc<Shared>),
}

impl FileOwner {
    /// The listener closed: removes the file, or leaves it to the other sharers.
    pub(crate) fn release(self) {
        match self {
            FileOwner::Own(f) => f.remove(),
            FileOwner::Shared(s) => drop(s),
        }
    }
}
