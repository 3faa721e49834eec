//! A fixed-capacity byte buffer for building hostile inputs (deep nesting, long tokens) without
//! an allocator.

/// Bytes built by appending; appends that do not fit are refused and remembered, so a check
/// never runs on a silently truncated input.
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Text<N> {
    pub(crate) const fn new() -> Self {
        Text { buf: [0; N], len: 0, overflowed: false }
    }

    /// Appends `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            None => self.overflowed = true,
        }
        self
    }

    /// Appends `bytes` `times` times.
    pub(crate) fn repeat(&mut self, bytes: &[u8], times: usize) -> &mut Self {
        for _ in 0..times {
            self.push(bytes);
        }
        self
    }

    /// What was built, or `None` if some append did not fit.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        if self.overflowed { None } else { self.buf.get(..self.len) }
    }
}

/// The first `n` bytes of `buf` (all of it if shorter): a bounds-checked `&mut buf[..n]`.
pub(crate) fn head(buf: &mut [u8], n: usize) -> &mut [u8] {
    let n = n.min(buf.len());
    buf.get_mut(..n).unwrap_or_default()
}
