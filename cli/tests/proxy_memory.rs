//! What `credflow proxy` leaves of a credential in its memory once an exchange is over: the
//! copies it made for the exchange are wiped, so it holds no more copies after many exchanges
//! than before them. The proxy's memory is read from outside, as a debugger or a core dump
//! would see it (`/proc/PID/mem` of the child; Linux only), the emulator on 127.0.0.1 upstream.
#![cfg(target_os = "linux")]

mod proxy_support;

use std::io::{Read, Seek, SeekFrom};

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};
use proxy_support::{Proxy, http};

/// How many times `needle` occurs in the readable memory of process `pid`.
fn occurrences_in_memory(pid: u32, needle: &[u8]) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut bytes = vec![0; usize::try_from(end - start).unwrap()];
        // [vvar] and the like cannot be read: skipped.
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut bytes).is_err() {
            continue;
        }
        found += bytes.windows(needle.len()).filter(|w| *w == needle).count();
    }
    found
}

/// The local key, handed out by the proxy's `/oauth/token` to a client that presents it: the
/// proxy held the key (its settings), and per exchange made copies it freed unwiped (the key
/// decoded from the Basic header, the token `String`, the JSON value holding it, the response
/// body). Counted by its last 32 bytes: glibc reuses a freed block's first 16 bytes for its
/// free list, so a whole key freed unwiped might not be found whole.
#[tokio::test]
async fn the_local_keys_copies_for_an_exchange_are_wiped_after_it() {
    const KEY: &str = "local-key-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijkl";
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let dir = std::env::temp_dir().join(format!("credflow-proxy-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let args = ["--local-key-file", key_file.to_str().unwrap()];
    let proxy =
        Proxy::start(&emu.token_url(), &emu.api_base(), DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, &args)
            .await;
    let http = http();
    proxy.ready(&http).await;
    let pid = proxy.child.id().unwrap();
    let tail = &KEY.as_bytes()[KEY.len() - 32..];
    let before = occurrences_in_memory(pid, tail);
    assert!(before >= 1, "the proxy holds its key");
    for _ in 0..20 {
        let response = http
            .post(proxy.url("/oauth/token"))
            .basic_auth("sdk", Some(KEY))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["access_token"], KEY);
    }
    // The last answer has gone out (its body was read in full) and the proxy is idle.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = occurrences_in_memory(pid, tail);
    assert_eq!(after, before, "copies of the local key left in the proxy's memory");
    std::fs::remove_dir_all(&dir).unwrap();
}
