//! Seeds of the core's targets for what a 60 s campaign from the first seeds did not reach
//! (`scripts/fuzz-coverage`): the rarer OAuth error codes, a `Bearer` challenge's
//! `invalid_request`, the two other Genesys 403 diagnoses and permission lists longer than a
//! diagnosis holds, and a scope granted wider than, or exactly as, requested.

pub(super) fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut s = Vec::new();
    let mut add = |target, name, bytes: Vec<u8>| s.push((target, name, bytes));

    // token_error: status (u16 LE), body.
    let error = |status: u16, code: &str| {
        let mut v = status.to_le_bytes().to_vec();
        v.extend(format!(r#"{{"error":"{code}","error_description":"{code}"}}"#).bytes());
        v
    };
    for (status, code) in [
        (400, "invalid_grant"),
        (400, "unauthorized_client"),
        (400, "unsupported_grant_type"),
        (500, "server_error"),
        (503, "temporarily_unavailable"),
    ] {
        add("token_error", code, error(status, code));
    }

    add(
        "www_authenticate",
        "invalid-request",
        b"Bearer realm=\"api\", error=\"invalid_request\", error_description=\"no token\"".to_vec(),
    );

    let forbidden = |body: &str| {
        format!("HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\r\n{body}")
            .into_bytes()
    };
    add(
        "classify",
        "genesys-403-any",
        forbidden(
            r#"{"message":"Unable to perform the requested action. You must have at least one of the following permission(s): [routing:queue:view, routing:queue:edit]","code":"missing.any.permissions","status":403}"#,
        ),
    );
    add(
        "classify",
        "genesys-403-any-without-list",
        forbidden(r#"{"message":"Access denied","code":"missing.any.permissions","status":403}"#),
    );
    add(
        "classify",
        "genesys-403-not-authorized",
        forbidden(r#"{"message":"Not authorized","code":"not.authorized","status":403}"#),
    );

    // Three permission lists in messageParams, longer together than a diagnosis holds.
    let list = |n: usize| {
        (0..8).map(|i| format!("routing:queue{n}x{i}:view")).collect::<Vec<_>>().join(", ")
    };
    add(
        "classify",
        "genesys-403-long-params",
        forbidden(&format!(
            r#"{{"message":"You are missing the following permission(s): [a:b:c]","code":"missing.permissions","status":403,"messageParams":{{"permissions":"{}","permission2":"{}","permission3":"{}"}}}}"#,
            list(1),
            list(2),
            list(3)
        )),
    );

    // token_response: flags (bit 0: a requested scope follows), default and max lifetime
    // (u32 LE seconds), the scope's length and bytes, the body.
    let response = |requested: &str, granted: &str| {
        let mut v = vec![1u8];
        v.extend(3600u32.to_le_bytes());
        v.extend((7 * 86_400u32).to_le_bytes());
        v.push(requested.len() as u8);
        v.extend(requested.bytes());
        v.extend(
            format!(r#"{{"access_token":"t0k3n","token_type":"Bearer","expires_in":60,"scope":"{granted}"}}"#)
                .bytes(),
        );
        v
    };
    add("token_response", "scope-widened", response("read", "read write"));
    add("token_response", "scope-as-requested", response("read write", "write read"));
    s
}
