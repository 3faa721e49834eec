//! The README shows compiled code: each of its Rust blocks that opens with `// file: PATH`
//! must equal that file of the repository, so the copy a reader sees is the code that the
//! tests run and the firmware links.

use std::path::Path;

#[test]
fn readme_blocks_naming_a_file_equal_that_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = Vec::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```rust\n// file: ") {
        let block = &rest[start + "```rust\n".len()..];
        let (first, body) = block.split_once('\n').unwrap();
        let path = first.trim_start_matches("// file: ").trim();
        let end = body.find("\n```").expect("the block ends");
        let shown = &body[..end + 1];
        let file = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("README names {path}: {e}"));
        assert!(shown == file, "README's copy of {path} differs from the file: copy it again");
        checked.push(path.to_owned());
        rest = &body[end..];
    }
    assert!(
        checked.iter().any(|p| p == "tests/embedded-tls/src/connector.rs"),
        "the README shows the TLS connector: {checked:?}"
    );
}
