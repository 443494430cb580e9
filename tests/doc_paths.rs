//! The runtime's documentation shows the paths users write: its doc
//! examples import from `phx_channels::…` (through a hidden
//! `# use phx_channels_runtime as phx_channels;` line, so they still run as
//! the runtime's doc tests), and every path they name exists in this crate.

#[path = "../channels-runtime/tests/support/sources.rs"]
mod sources;

use std::collections::BTreeSet;
use std::path::Path;

use sources::rust_sources;

/// What the runtime's docs may name after `phx_channels::`. Imported here,
/// so each name is proved to exist in the facade by this file compiling.
#[allow(unused_imports)]
use phx_channels::{
    changeset, channel, client, connect, crash, dashboard, describe, encode, endpoint, mailbox, origin, outbox, panics,
    presence, protocol, pubsub, reply, router, server, socket, testing, tls, token, trace, transport, typescript,
    MetricsSnapshot, SocketOptions,
};

const FACADE_NAMES: &[&str] = &[
    "changeset",
    "channel",
    "client",
    "connect",
    "crash",
    "dashboard",
    "describe",
    "encode",
    "endpoint",
    "mailbox",
    "origin",
    "outbox",
    "panics",
    "presence",
    "protocol",
    "pubsub",
    "reply",
    "router",
    "server",
    "socket",
    "testing",
    "tls",
    "token",
    "trace",
    "transport",
    "typescript",
    "MetricsSnapshot",
    "SocketOptions",
];

/// The hidden line that lets a runtime doc test read like the facade.
const ALIAS: &str = "# use phx_channels_runtime as phx_channels;";

/// Every doc-comment line of the runtime's sources: (file, line number, text).
fn doc_lines() -> Vec<(String, usize, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("channels-runtime/src");
    let mut found = Vec::new();
    for (relative, source) in rust_sources(&src) {
        for (n, line) in source.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(doc) = trimmed.strip_prefix("///").or_else(|| trimmed.strip_prefix("//!")) {
                found.push((relative.clone(), n + 1, doc.trim().to_owned()));
            }
        }
    }
    found
}

/// The identifier `text` starts with.
fn ident(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The first segment of each item of a `use` group (`a::b, c::{d, e}, f}`
/// gives `a`, `c`, `f`), up to the group's closing brace.
fn first_segments(group: &str) -> Vec<String> {
    let mut names = vec![ident(group)];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => names.push(ident(&group[i + 1..])),
            _ => {}
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

#[test]
fn runtime_docs_name_the_facade_not_the_runtime() {
    let lines = doc_lines();
    assert!(lines.len() > 1000, "read the runtime's docs ({} lines)", lines.len());
    let wrong: Vec<String> = lines
        .iter()
        .filter(|(_, _, doc)| doc.contains("phx_channels_runtime") && doc != ALIAS)
        .map(|(file, n, doc)| format!("channels-runtime/src/{file}:{n}: {doc}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "write `phx_channels::…` (after a hidden `{ALIAS}` line in a doc test):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_path_the_runtime_docs_name_exists_in_the_facade() {
    let mut named = BTreeSet::new();
    for (file, n, doc) in doc_lines() {
        let mut rest = doc.as_str();
        while let Some(at) = rest.find("phx_channels::") {
            rest = &rest[at + "phx_channels::".len()..];
            let names = match rest.strip_prefix('{') {
                Some(group) => first_segments(group),
                None => vec![ident(rest)],
            };
            for name in names {
                named.insert(name.clone());
                assert!(
                    FACADE_NAMES.contains(&name.as_str()),
                    "channels-runtime/src/{file}:{n} names `phx_channels::{name}`, which the facade does not export"
                );
            }
        }
    }
    assert!(named.len() > 10, "the docs name the facade's modules: {named:?}");
}
