//! A forward-only byte cursor shared by the header parsers. Each parser adds the productions it
//! needs in its own `impl` block; this holds the primitives they share.

/// The unread rest of the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    /// The next byte, if any.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// Skips `n` bytes (or to the end).
    pub(crate) fn advance(&mut self, n: usize) {
        self.0 = self.0.get(n..).unwrap_or(&[]);
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.0.first() == Some(&b) {
            self.advance(1);
            true
        } else {
            false
        }
    }

    /// Consumes optional whitespace (RFC 9110 `OWS`: spaces and tabs), returning how much.
    pub(crate) fn ows(&mut self) -> usize {
        self.take_while(|b| matches!(b, b' ' | b'\t')).len()
    }

    /// Consumes the longest prefix whose bytes satisfy `pred`.
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.0.iter().take_while(|b| pred(**b)).count();
        let (taken, rest) = self.0.split_at_checked(n).unwrap_or((&[], self.0));
        self.0 = rest;
        taken
    }
}
