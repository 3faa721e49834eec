//! The framing every byte read from Redis passes before the `redis` crate's parser
//! (`credflow_redis::fuzzing::Framing`, `adapters/redis/src/bounded.rs`): the bound on what one
//! reply may make the process hold. Whoever answers on the store's connection chooses these
//! bytes.
//!
//! Input: a split byte (`% 16 + 1`: the size of the chunks the bytes are fed in), then the
//! bytes a connection reads.
//!
//! Checked: no panic, `Display` of every refusal included; fed a byte at a time and fed in
//! chunks, the framing answers the same (a reply ends, or is refused for the same reason, in
//! the same chunk); no reply it lets through is longer than `MAX_REPLY_LEN`; and it ends each
//! reply exactly where the `redis` crate's parser ends it (a reply that ended sooner for the
//! framing than for the parser would let the parser buffer past the bound unseen): the parser
//! reads the framed bytes as one value or fails on them, reads nothing complete in one byte
//! less, and reads the same with the bytes after them; a reply the framing refuses as not RESP,
//! or has not seen the end of, the parser does not read either.
#![no_main]

use credflow_redis::fuzzing::{Framing, MAX_REPLY_LEN, Refusal};
use libfuzzer_sys::fuzz_target;

/// Replies whose parse is compared with the bytes after them too (each such parse reads the
/// rest of the input).
const COMPARED_WITH_TAIL: usize = 16;

/// What the framing made of the bytes fed one at a time: where each reply ended, and where
/// and why it refused one.
struct Framed {
    ends: Vec<usize>,
    refused: Option<(usize, Refusal)>,
}

fn byte_at_a_time(bytes: &[u8]) -> Framed {
    let mut framing = Framing::default();
    let mut ends = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        if let Err((refusal, text)) = framing.feed(std::slice::from_ref(b)) {
            assert!(!text.is_empty());
            return Framed { ends, refused: Some((i, refusal)) };
        }
        if framing.between_replies() {
            ends.push(i + 1);
        }
    }
    Framed { ends, refused: None }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let framed = byte_at_a_time(bytes);

    // In chunks: the same ends (seen at each chunk's end) and the same refusal.
    let size = usize::from(split % 16) + 1;
    let mut framing = Framing::default();
    let mut fed = 0;
    for chunk in bytes.chunks(size) {
        let result = framing.feed(chunk);
        let end = fed + chunk.len();
        match framed.refused {
            Some((at, refusal)) if at < end => {
                assert_eq!(result.map_err(|(r, _)| r), Err(refusal), "refused at {at}");
                break;
            }
            _ => assert!(result.is_ok(), "refused in chunks only, at {fed}..{end}"),
        }
        fed = end;
        let ended = framed.ends.binary_search(&fed).is_ok();
        assert_eq!(framing.between_replies(), ended, "at {fed}");
    }

    // Each reply as the parser reads it.
    let mut start = 0;
    for (n, &end) in framed.ends.iter().enumerate() {
        assert!(end - start <= MAX_REPLY_LEN, "a reply of {} bytes let through", end - start);
        let reply = &bytes[start..end];
        let parsed = redis::parse_redis_value(reply);
        assert!(
            redis::parse_redis_value(&reply[..reply.len() - 1]).is_err(),
            "the parser ends {reply:?} sooner"
        );
        if n < COMPARED_WITH_TAIL {
            let with_tail = redis::parse_redis_value(&bytes[start..]);
            assert_eq!(parsed.ok(), with_tail.ok(), "the parser reads on past {reply:?}");
        }
        start = end;
    }
    match framed.refused {
        Some((_, Refusal::Malformed)) | None if start < bytes.len() => {
            let rest = &bytes[start..];
            assert!(redis::parse_redis_value(rest).is_err(), "the parser reads {rest:?}");
        }
        _ => {}
    }
});
