//! Seeds of the adapters' targets: `wire` (the embedded HTTP/1.1 reader), `redis_record` and
//! `redis_replies` (what the fleet store reads back from Redis), `redis_framing` (the bound on
//! each reply read from Redis).

use credflow_core::UnixTime;
use credflow_core::secret::Credentials;
use credflow_core::snapshot::Stamp;
use credflow_redis::fuzzing::close;

use crate::wire::chunked;
use crate::{CLIENT, REFERENCE};

/// A `wire` input: mode (even raw, odd chunked body), buffer size, flags, read pieces, bytes.
fn wire(mode: u8, cap: u16, flags: u8, pieces: &[u8], sent: &[u8]) -> Vec<u8> {
    let [lo, hi] = (cap - 1).to_le_bytes();
    let mut v = vec![mode, lo, hi, flags, pieces.len() as u8];
    v.extend_from_slice(pieces);
    v.extend_from_slice(sent);
    v
}

const GENESYS_200: &str = "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
    Content-Type: application/json\r\nContent-Length: 47\r\nConnection: keep-alive\r\n\
    inin-ratelimit-count: 12\r\ninin-ratelimit-allowed: 300\r\ninin-ratelimit-reset: 42\r\n\
    ININ-Correlation-Id: c0ffee00-1111-2222-3333-444455556666\r\n\r\n\
    {\"entities\":[],\"pageSize\":25,\"pageNumber\":1}\n";

const GENESYS_429: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 42\r\n\
    Content-Type: application/json\r\nContent-Length: 86\r\n\r\n\
    {\"message\":\"Rate limit exceeded the maximum. Retry the request in [42] seconds\",\"status\":429}";

const CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

pub(super) fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut s = Vec::new();
    let mut add = |target, name, bytes: Vec<u8>| s.push((target, name, bytes));

    // wire, raw mode: whole responses, in pieces.
    add("wire", "genesys-200", wire(0, 4096, 0, &[], GENESYS_200.as_bytes()));
    add("wire", "genesys-200-bytewise", wire(0, 512, 0, &[0; 15], GENESYS_200.as_bytes()));
    add("wire", "genesys-429", wire(0, 1024, 0, &[20, 3], GENESYS_429.as_bytes()));
    let rfc = chunked(&[b"Wiki", b"pedia", b" in\r\n\r\nchunks."]);
    add("wire", "chunked", wire(0, 256, 0, &[1, 0, 4], &[CHUNKED_HEAD.as_bytes(), &rfc].concat()));
    add(
        "wire",
        "chunked-extensions-bare-lf",
        wire(
            0,
            128,
            0,
            &[],
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              5;name=value\nhello\n0\nX-Checksum: 1\n\n",
        ),
    );
    add(
        "wire",
        "interim-then-final",
        wire(
            0,
            256,
            0,
            &[10],
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
        ),
    );
    add(
        "wire",
        "http10-until-close",
        wire(0, 256, 0, &[], b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"),
    );
    add(
        "wire",
        "error-body-truncated",
        wire(
            0,
            80,
            0,
            &[],
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n\
              0123456789012345678901234567890123456789012345678901234567890123456789",
        ),
    );
    add(
        "wire",
        "no-content-close",
        wire(0, 64, 0, &[], b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"),
    );
    add(
        "wire",
        "head-request",
        wire(0, 64, 1, &[], b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"),
    );
    add(
        "wire",
        "pipelined-extra-bytes",
        wire(0, 256, 0, &[], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"),
    );
    add(
        "wire",
        "length-then-close",
        wire(
            0,
            256,
            0,
            &[],
            b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        ),
    );
    add(
        "wire",
        "closed-mid-body-reset",
        wire(0, 256, 2, &[30], b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
    );
    add(
        "wire",
        "both-framings",
        wire(
            0,
            256,
            0,
            &[],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-length: 3\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
    );
    add(
        "wire",
        "unauthorized-challenge",
        wire(
            0,
            512,
            0,
            &[],
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"api\", \
              error=\"invalid_token\", error_description=\"expired\"\r\nContent-Length: 0\r\n\r\n",
        ),
    );
    let many: String = (0..33).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    add(
        "wire",
        "too-many-fields",
        wire(0, 4096, 0, &[], format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()),
    );
    add(
        "wire",
        "http10-keep-alive",
        wire(
            0,
            256,
            0,
            &[],
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
        ),
    );
    add(
        "wire",
        "switching-protocols",
        wire(0, 256, 0, &[], b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
    );
    // wire, chunked mode: the body behind a fixed head, against the reference decoder.
    let long = chunked(&[&[b'x'; 40], b"yz", &[b'0'; 17]]);
    add("wire", "chunked-fits", wire(1, 512, 0, &[3, 0, 9], &long));
    add("wire", "chunked-compacts", wire(1, 100, 0, &[6; 8], &long));
    add("wire", "chunked-error-cut", wire(1, 70, 4, &[], &long));
    add("wire", "chunked-too-many-digits", wire(1, 256, 0, &[], b"00000000000000001\r\nx\r\n"));
    add("wire", "chunked-ends-early", wire(1, 256, 2, &[], b"10\r\nonly this"));

    // request_head: method, host, port, body length, buffer, token, path, fields, pieces.
    let request = |method: u8,
                   host: u8,
                   port: u16,
                   body: u16,
                   out: u16,
                   path: &str,
                   fields: &[(&str, &str)],
                   pieces: &[u8]| {
        let mut v = vec![method, host];
        v.extend(port.to_le_bytes());
        v.extend(body.to_le_bytes());
        v.extend(out.to_le_bytes());
        let mut string = |bytes: &[u8]| {
            v.push(bytes.len() as u8);
            v.extend(bytes);
        };
        string(b"eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl");
        string(path.as_bytes());
        v.push(fields.len() as u8);
        for (name, value) in fields {
            v.push(name.len() as u8);
            v.extend(name.as_bytes());
            v.push(value.len() as u8);
            v.extend(value.as_bytes());
        }
        v.extend(pieces);
        v
    };
    add(
        "request_head",
        "get-queues",
        request(0, 0, 0, u16::MAX, 1023, "/api/v2/routing/queues?pageSize=25", &[], &[]),
    );
    add(
        "request_head",
        "post-json-ipv6-small-buffer",
        request(
            1,
            2,
            8443,
            17,
            40,
            "/api/v2/analytics/conversations/details/query",
            &[("Content-Type", "application/json"), ("Accept", "*/*")],
            &[3, 0, 9],
        ),
    );
    add(
        "request_head",
        "header-injection",
        request(0, 1, 0, u16::MAX, 512, "/a", &[("X-A", "1\r\nEvil: 1")], &[]),
    );
    add(
        "request_head",
        "reserved-field",
        request(3, 3, 0, 0, 512, "/a", &[("X-Ok", "\tv "), ("authorization", "x")], &[]),
    );
    add("request_head", "path-with-space", request(5, 0, 0, u16::MAX, 512, "/a b", &[], &[]));
    add(
        "request_head",
        "stalled-connection",
        request(4, 0, 0, u16::MAX, 512, "/api/v2/users/me", &[("X-Name", "ü")], &[10, 255]),
    );
    add(
        "request_head",
        "reset-connection",
        request(0, 0, 443, u16::MAX, 512, "/api/v2/users/me", &[], &[40, 254]),
    );

    // redis_record: a genuine plaintext value (deterministic), raw bytes, and closed values
    // edited afterwards (encrypted ones have a random nonce: only this form is reproducible).
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    let expires = UnixTime::from_secs(REFERENCE.as_secs() + 3600);
    let fleet_key = b"fuzz-fleet-key-0123456789";
    let aad = b"credflow:{client|https://login.example/oauth/token}:token";
    let stamp = Stamp::from_millis(REFERENCE.as_secs() * 1000);
    let plain =
        close(fleet_key, None, aad, "genesys-token-0123456789", expires, fp, stamp).unwrap();
    add("redis_record", "plain-valid", [&[0u8][..], &plain].concat());
    let mut forged = b"CFE1".to_vec();
    forged.extend([0u8; 24]);
    forged.extend(&plain);
    forged.extend([0u8; 16]);
    add("redis_record", "encrypted-forged", [&[2u8][..], &forged].concat());
    let edited = |flags: u8, secs: i16, edits: &[[u8; 4]]| {
        let token = b"genesys-token-0123456789";
        let mut v = vec![1, flags, token.len() as u8 - 1];
        v.extend(token);
        v.extend(secs.to_le_bytes());
        v.extend(stamp.as_millis().to_le_bytes());
        v.extend(edits.iter().flatten());
        v
    };
    add("redis_record", "plain-intact", edited(0, 3600, &[]));
    add("redis_record", "encrypted-intact", edited(1, 3600, &[]));
    add("redis_record", "encrypted-expired", edited(1, -5, &[]));
    add("redis_record", "encrypted-bit-flip", edited(1, 3600, &[[0, 40, 0, 1]]));
    add("redis_record", "plain-truncated", edited(0, 3600, &[[1, 30, 0, 0]]));

    // redis_replies: a kind byte (get, acquire, admit, hold, count) and RESP bytes.
    let reply = |kind: u8, resp: &[u8]| [&[kind][..], resp].concat();
    let mut bulk = format!("${}\r\n", plain.len()).into_bytes();
    bulk.extend(&plain);
    bulk.extend(b"\r\n");
    add("redis_replies", "get-token", reply(0, &bulk));
    add("redis_replies", "get-nil", reply(0, b"$-1\r\n"));
    add("redis_replies", "acquire-held", reply(1, b"*2\r\n:2\r\n:1234\r\n"));
    add("redis_replies", "acquire-no-expiry", reply(1, b"*2\r\n:2\r\n:-1\r\n"));
    add("redis_replies", "acquire-taken", reply(1, b"*2\r\n:1\r\n:0\r\n"));
    add("redis_replies", "admit-reserved", reply(2, b"*4\r\n:1\r\n:250\r\n:0\r\n:0\r\n"));
    add("redis_replies", "admit-negative", reply(2, b"*4\r\n:1\r\n:-5\r\n:0\r\n:0\r\n"));
    add(
        "redis_replies",
        "admit-resp3-strings",
        reply(2, b"~4\r\n+0\r\n$4\r\n1500\r\n:0\r\n:0\r\n"),
    );
    add("redis_replies", "admit-held-by-fleet", reply(2, b"*4\r\n:0\r\n:60000\r\n:1\r\n:1\r\n"));
    add("redis_replies", "hold", reply(3, b"*2\r\n:60000\r\n:0\r\n"));
    add("redis_replies", "count-published", reply(4, b":1\r\n"));
    add("redis_replies", "count-noscript", reply(4, b"-NOSCRIPT No matching script.\r\n"));

    // redis_framing: a split byte (chunks of `% 16 + 1`), then what a connection reads.
    let framing = |split: u8, resp: &[u8]| [&[split][..], resp].concat();
    let mut replies = b"+OK\r\n*4\r\n:1\r\n:250\r\n:0\r\n:0\r\n".to_vec();
    replies.extend(&bulk);
    replies.extend(b"$-1\r\n-NOSCRIPT No matching script.\r\n");
    add("redis_framing", "credflow-replies", framing(6, &replies));
    add(
        "redis_framing",
        "resp3-hello",
        framing(
            2,
            b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
              $7\r\nmodules\r\n*1\r\n%1\r\n$4\r\nname\r\n=8\r\ntxt:json\r\n\
              ~2\r\n#t\r\n,1.5\r\n|1\r\n+key\r\n(12345678901234567890\r\n_\r\n>2\r\n+a\r\n:1\r\n",
        ),
    );
    add("redis_framing", "announced-gigabyte", framing(0, b"$1000000000\r\nxxxxxxxx"));
    add("redis_framing", "billion-elements", framing(3, b"*1000000000\r\n$1\r\ne\r\n"));
    add("redis_framing", "not-resp", framing(1, b"HTTP/1.1 200 OK\r\n\r\n"));
    s
}
