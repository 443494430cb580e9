//! The runtime's own Rust sources, for the tests that read them
//! (`module_graph.rs`, and the facade's `tests/doc_paths.rs`).

use std::path::Path;

/// Every `.rs` file under `src`: its path relative to `src` (with `/`), and
/// its text.
pub fn rust_sources(src: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
                found.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}
