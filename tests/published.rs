//! Every crate of the workspace that is published says what crates.io and
//! docs.rs need: a description, a license, the repository, a README that
//! exists, and docs.rs metadata; the others say `publish = false`.
//! (`cargo package --workspace`, in `./test.sh`, builds each one from its
//! packaged files.)

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Crates that are not published.
const UNPUBLISHED: &[&str] = &["bench", "ui-tests"];

#[test]
fn published_crates_have_their_metadata_and_the_others_say_publish_false() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let mut published = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("a name");
        if UNPUBLISHED.contains(&name) {
            assert_eq!(package["publish"], serde_json::json!([]), "{name} must say `publish = false`");
            continue;
        }
        assert!(package["publish"].is_null(), "{name} is not published: add it to UNPUBLISHED");
        for field in ["description", "license", "repository"] {
            assert!(package[field].as_str().is_some_and(|v| !v.is_empty()), "{name} has no {field}");
        }
        let manifest = Path::new(package["manifest_path"].as_str().expect("a manifest"));
        let readme = package["readme"].as_str().unwrap_or_else(|| panic!("{name} has no `readme`"));
        let readme = manifest.parent().expect("a folder").join(readme);
        let text = std::fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{name}: {}: {e}", readme.display()));
        assert!(text.starts_with("# "), "{name}: {} has no title", readme.display());
        assert!(package["metadata"]["docs"]["rs"].is_object(), "{name} has no [package.metadata.docs.rs]");
        published.push(name.to_owned());
    }
    published.sort();
    assert_eq!(
        published,
        [
            "phx-channels",
            "phx-channels-client",
            "phx-channels-macros",
            "phx-channels-protocol",
            "phx-channels-runtime",
            "phx-channels-wire"
        ]
    );
}
