//! The TLS record buffers, lent to one connection at a time.
//!
//! embedded-tls borrows its two record buffers for as long as a connection lives
//! (`TlsConnection<'a, …>` holds `&'a mut [u8]`) and never gives them back, while
//! credflow-embedded keeps its connection alive across calls and opens a new one when the
//! server closed the old: the connection must own what it borrows, for as long as the
//! connector lives, again and again. Safe Rust cannot lend the same memory mutably a second
//! time under one lifetime, so this module does what embassy-net's `TcpClientState` does for
//! socket buffers: a slot that hands out `&'d mut` slices while a flag says they are taken,
//! and takes them back when the connection that holds them is dropped. It is the only
//! `unsafe` in this crate.

use core::cell::{Cell, UnsafeCell};

/// The two record buffers of one TLS connection: `R` bytes for records read (a whole
/// encrypted record must fit: 16 640 bytes for a server that sends full-size records, which
/// is every server that ignores the `max_fragment_length` extension), `W` bytes for records
/// written (at least the ClientHello and one request head; longer writes are split). One
/// connection at a time: the credflow client holds one, and closes it before opening the
/// next.
///
/// Put it in a `static` (`StaticCell`) on a device, or in a local that outlives the
/// connector on the host.
pub struct TlsBuffers<const R: usize, const W: usize> {
    read: UnsafeCell<[u8; R]>,
    write: UnsafeCell<[u8; W]>,
    /// The slices are held by a live connection. `Cell` makes this type `!Sync`: no other
    /// thread can lend at the same time.
    lent: Cell<bool>,
}

impl<const R: usize, const W: usize> TlsBuffers<R, W> {
    /// Zeroed buffers, not lent.
    pub const fn new() -> Self {
        TlsBuffers {
            read: UnsafeCell::new([0; R]),
            write: UnsafeCell::new([0; W]),
            lent: Cell::new(false),
        }
    }

    /// The read and write buffers and the lease that gives them back, or `None` while a
    /// connection holds them.
    ///
    /// The caller must drop whatever holds the slices before the lease:
    /// [`TlsStream`](crate::TlsStream) declares its connection before its lease, so they drop
    /// in that order, and nothing else in this crate calls this.
    // Mutable slices from a shared borrow are the point: the flag, not the borrow checker,
    // keeps them exclusive (the lint's own advice for such a pool is `unsafe`, which this is).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn lend(&self) -> Option<(Lease<'_>, &mut [u8], &mut [u8])> {
        if self.lent.replace(true) {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `lent` was false, so no slice of either array is alive: every earlier
        // lease was dropped, after the connection holding its slices (see above). `lent` is
        // now true until this lease is dropped, so no other slice is made meanwhile, and the
        // type is `!Sync`, so no other thread can race for the flag.
        let (read, write) = unsafe { (&mut *self.read.get(), &mut *self.write.get()) };
        Some((Lease { lent: &self.lent }, read, write))
    }
}

impl<const R: usize, const W: usize> Default for TlsBuffers<R, W> {
    fn default() -> Self {
        TlsBuffers::new()
    }
}

/// Marks the buffers free again when dropped.
pub(crate) struct Lease<'d> {
    lent: &'d Cell<bool>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.lent.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::TlsBuffers;

    #[test]
    fn one_lease_at_a_time_and_the_buffers_come_back() {
        let buffers = TlsBuffers::<8, 4>::new();
        let (lease, read, write) = buffers.lend().unwrap();
        assert_eq!((read.len(), write.len()), (8, 4));
        read[0] = 1;
        assert!(buffers.lend().is_none(), "lent twice");
        drop(lease);
        let (_lease, read, _) = buffers.lend().unwrap();
        assert_eq!(read[0], 1);
    }
}
