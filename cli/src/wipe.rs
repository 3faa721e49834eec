//! Buffers that may hold a credential (an error body a server may have echoed one into) and
//! are wiped however they grow.

use zeroize::Zeroizing;

/// Appends `bytes` to `buf`. When `buf` must grow, its bytes move to a buffer of its own making
/// and the old one is wiped as it goes: `Vec`'s own growth would free the old buffer as it is.
pub(crate) fn extend_wiped(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = buf.len().saturating_add(bytes.len());
    if needed > buf.capacity() {
        let capacity = needed.max(buf.capacity().saturating_mul(2));
        let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
        grown.extend_from_slice(buf);
        // The old buffer is wiped (all its capacity) when it is dropped here.
        *buf = grown;
    }
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    #[test]
    fn grows_into_buffers_of_its_own_keeping_every_byte() {
        let mut buf = Zeroizing::new(Vec::new());
        let mut expected = Vec::new();
        for i in 0..100_u8 {
            let chunk = vec![i; usize::from(i) * 7];
            super::extend_wiped(&mut buf, &chunk);
            expected.extend_from_slice(&chunk);
            assert!(buf.capacity() >= buf.len());
        }
        assert_eq!(*buf, expected);
        // Room is doubled at least: a handful of moves, not one per chunk.
        let mut buf = Zeroizing::new(Vec::with_capacity(1));
        let mut moves = 0;
        for _ in 0..1000 {
            let before = buf.as_ptr();
            super::extend_wiped(&mut buf, b"x");
            moves += usize::from(buf.as_ptr() != before);
        }
        assert!(moves <= 11, "{moves}");
    }
}
