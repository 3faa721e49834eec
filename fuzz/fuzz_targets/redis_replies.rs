//! What the fleet store reads back from Redis besides the token value: the answers of
//! `GETRANGE` and of the Lua scripts (the acquire script's lease time to live, the admission
//! script's count and wait, the 429 hold), which derive from the lease key and the rate hash,
//! whose fields anyone with write access to Redis sets. Raw RESP bytes go through the `redis`
//! crate's parser and conversions (as `invoke_async` does), then the store's decoding
//! (`credflow_redis::fuzzing`); a token value `GETRANGE` returns is opened as the store opens
//! it (unless it is longer than any value credflow writes: the store does not open those).
//!
//! Input: a kind byte (`% 5`: get, acquire, admit, hold, count), then RESP2/RESP3 bytes.
//!
//! Checked: no panic, `Display` of every error included; a reply decodes as its type allows
//! and means what the script's documentation says: a negative admission wait is refused, never
//! admitted; a lease held elsewhere is waited for at least 1 ms, and a negative time to live
//! (a lease without expiry) is not taken for a due expiry; a hold is only a positive one.
#![no_main]

use std::time::Duration;

use credflow_core::secret::Credentials;
use credflow_core::snapshot::Stamp;
use credflow_fuzz::{CLIENT, REFERENCE, show};
use credflow_redis::fuzzing::{
    Acquired, MAX_VALUE_LEN, acquire_reply, admit_reply, count_reply, hold_reply, open,
    token_value_reply,
};
use credflow_reqwest::shared::{Admission, StoreError};
use libfuzzer_sys::fuzz_target;
use redis::Value;

fuzz_target!(|data: &[u8]| {
    let Some((kind, resp)) = data.split_first() else { return };
    let value = match redis::parse_redis_value(resp) {
        Ok(value) => value,
        Err(e) => {
            let _ = show(&e);
            return;
        }
    };
    match kind % 5 {
        0 => get(&value),
        1 => acquire(&value),
        2 => admit(&value),
        3 => hold(&value),
        _ => count(&value),
    }
});

/// The pair a script answer converts to, as the store asks for it.
fn pair(value: &Value) -> Option<(i64, i64)> {
    redis::from_redis_value(value).ok()
}

fn checked<T>(result: Result<T, StoreError>, expected: Option<()>) -> Option<T> {
    match result {
        Ok(v) => {
            assert!(expected.is_some(), "decoded a reply its type refuses");
            Some(v)
        }
        Err(e) => {
            let _ = show(&e);
            None
        }
    }
}

fn get(value: &Value) {
    let converted: Option<Vec<u8>> = redis::from_redis_value(value).ok();
    let Some(bytes) = checked(token_value_reply(value), converted.as_ref().map(|_| ())) else {
        return;
    };
    assert_eq!(Some(&bytes), converted.as_ref());
    if bytes.is_empty() || bytes.len() > MAX_VALUE_LEN {
        return;
    }
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    for key in [None, Some([7u8; 32])] {
        let fleet = b"fuzz-fleet-key-0123456789";
        if let Err(Some(e)) = open(fleet, key, b"k", &bytes, REFERENCE, fp, Stamp::ZERO) {
            let _ = show(&e);
        }
    }
}

fn acquire(value: &Value) {
    let expected = pair(value);
    let Some(got) = checked(acquire_reply(value), expected.map(|_| ())) else { return };
    let (code, pttl) = expected.unwrap();
    let model = match code {
        0 => Acquired::Changed,
        1 => Acquired::Taken,
        _ if pttl < 0 => Acquired::Held(None),
        _ => Acquired::Held(Some(Duration::from_millis(pttl.unsigned_abs().max(1)))),
    };
    assert_eq!(got, model, "{code} {pttl}");
}

fn admit(value: &Value) {
    let expected: Option<(i64, i64, i64, i64)> = redis::from_redis_value(value).ok();
    match (admit_reply(value), expected) {
        (Ok(got), Some((counted, wait, held, _))) => {
            assert!(wait >= 0, "admitted on a negative wait: {got:?}");
            let ms = Duration::from_millis(wait.unsigned_abs());
            let model = match counted {
                1 if wait == 0 => Admission::Now,
                1 => Admission::After(ms),
                _ if held == 1 => Admission::Held(ms),
                _ => Admission::Wait(ms),
            };
            assert_eq!(got, model);
        }
        (Err(e), Some((_, wait, _, _))) => {
            assert!(wait < 0, "refused a valid answer: {e:?}");
            let _ = show(&e);
        }
        (Ok(got), None) => panic!("decoded {got:?} from a reply that is not four integers"),
        (Err(e), None) => {
            let _ = show(&e);
        }
    }
}

fn hold(value: &Value) {
    let expected: Option<(i64, i64)> = redis::from_redis_value(value).ok();
    let Some(got) = checked(hold_reply(value), expected.map(|_| ())) else { return };
    let (left, _) = expected.unwrap();
    assert_eq!(got, (left > 0).then(|| Duration::from_millis(left.unsigned_abs())));
}

fn count(value: &Value) {
    let expected: Option<i64> = redis::from_redis_value(value).ok();
    let got = checked(count_reply(value), expected.map(|_| ()));
    assert_eq!(got, expected);
}
