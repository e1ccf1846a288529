//! Receive buffers shared by all connections of a loop: `count` buffers of `size` bytes, named by
//! a 16-bit id. io_uring hands them to the kernel through a provided-buffer ring; epoll picks one
//! from a free list for each `recv`. A buffer holds data only from its completion until the
//! owner's read callback returns, so idle connections hold no read buffer.

/// The memory of the pool; one allocation for the loop's lifetime.
pub struct BufPool {
    mem: Box<[u8]>,
    size: usize,
    count: u16,
}

impl BufPool {
    /// `count` buffers of `size` bytes each.
    pub fn new(count: u16, size: usize) -> BufPool {
        BufPool {
            mem: vec![0u8; count as usize * size].into_boxed_slice(),
            size,
            count,
        }
    }

    /// Number of buffers.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Size of each buffer.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Start of buffer `bid`. The memory does not move while the pool lives.
    pub fn ptr(&mut self, bid: u16) -> *mut u8 {
        assert!(bid < self.count);
        // SAFETY: bid < count, so the offset stays inside `mem`.
        unsafe { self.mem.as_mut_ptr().add(bid as usize * self.size) }
    }
}
