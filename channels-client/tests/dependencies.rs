//! A program that is only a client compiles no server: the client crate's
//! normal dependency tree (what a user's build compiles for it) holds none
//! of the server's crates.

use std::process::Command;

/// Crates only a server needs. `hyper` is the HTTP server under axum (the
/// WebSocket client does its handshake with `httparse` and `http`).
const SERVER_CRATES: &[&str] = &[
    "phx-channels-runtime",
    "phx-channels-macros",
    "axum",
    "axum-core",
    "hyper",
    "hyper-util",
    "tower",
    "validator",
    "pbkdf2",
    "hmac",
    "metrics",
    "redis",
    "async-nats",
];

/// A package's normal dependencies (itself included), by name, as `cargo
/// tree` resolves them from the workspace's lock file.
fn normal_dependencies(package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let mut names: Vec<String> =
        tree.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_client_compiles_no_server_crate() {
    let names = normal_dependencies("phx-channels-client");
    assert!(names.iter().any(|n| n == "phx-channels-protocol"), "the tree was not read: {names:?}");
    assert!(names.iter().any(|n| n == "tokio-tungstenite"), "the tree was not read: {names:?}");
    let server: Vec<&String> = names.iter().filter(|n| SERVER_CRATES.contains(&n.as_str())).collect();
    assert!(server.is_empty(), "the client depends on server crates: {server:?}");
}

#[test]
fn the_protocol_crate_needs_no_runtime() {
    let names = normal_dependencies("phx-channels-protocol");
    assert!(names.iter().any(|n| n == "serde_json"), "the tree was not read: {names:?}");
    for runtime in ["tokio", "tokio-tungstenite", "tungstenite", "futures-util"].iter().chain(SERVER_CRATES) {
        assert!(!names.iter().any(|n| n == runtime), "the protocol crate depends on {runtime}: {names:?}");
    }
}
