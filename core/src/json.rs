//! Small helpers around `serde-json-core` shared by the body parsers.

/// The offset of the first `{` or `[` (outside strings) that nests deeper than `max_depth`, if
/// any. `serde-json-core` recurses when it skips nested values it does not read, so bodies are
/// checked (or cut) here first: a hostile body cannot exhaust the stack.
pub(crate) fn first_too_deep(body: &[u8], max_depth: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    body.iter().position(|&b| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            return false;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                return depth > max_depth;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_outside_strings_only() {
        assert_eq!(first_too_deep(br#"{"a":[1,{"b":2}]}"#, 3), None);
        assert_eq!(first_too_deep(br#"{"a":[1,{"b":2}]}"#, 2), Some(8));
        assert_eq!(first_too_deep(br#"{"a":"[[[[\"{{{{"}"#, 1), None);
        assert_eq!(first_too_deep(b"", 0), None);
        assert_eq!(first_too_deep(b"[", 0), Some(0));
    }
}
