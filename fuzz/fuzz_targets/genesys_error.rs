//! `http::genesys::parse_genesys_error` and `GenesysError::missing_permissions` on arbitrary
//! bodies (the whole input).
//!
//! Checked: no panic, `Display` included; a body that does not start with `{` (after a BOM and
//! whitespace) is not an error body; text fields are bounded and free of control characters;
//! every permission reported is a non-empty item without separators or whitespace.
#![no_main]

use credflow_core::http::genesys::{
    CODE_CAPACITY, CONTEXT_ID_CAPACITY, MAX_PARAMS, MESSAGE_CAPACITY, parse_genesys_error,
};
use credflow_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(e) = parse_genesys_error(data) else { return };
    let _ = show(&e);
    let _ = format!("{e:?}");

    let start = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data).trim_ascii_start();
    assert_eq!(start.first(), Some(&b'{'), "an error read from a non-object body");

    assert!(e.code.len() <= CODE_CAPACITY && e.message.len() <= MESSAGE_CAPACITY);
    assert!(e.message_params.len() <= MAX_PARAMS);
    let clean = |s: &str| !s.chars().any(char::is_control);
    assert!(clean(&e.code) && clean(&e.message), "control character kept");
    if let Some(id) = &e.context_id {
        assert!(id.len() <= CONTEXT_ID_CAPACITY && clean(id), "bad contextId kept");
    }
    for (key, value) in &e.message_params {
        assert!(clean(key) && clean(value), "control character in messageParams");
    }
    let _ = e.has_code(&e.code);
    for permission in e.missing_permissions() {
        assert!(!permission.is_empty());
        assert!(
            !permission.contains(|c: char| matches!(c, ',' | '[' | ']' | '"') || c.is_whitespace()),
            "permission item {permission:?} contains a separator"
        );
    }
});
