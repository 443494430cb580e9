//! The modules of every crate of the workspace form a graph without
//! cycles, and the runtime's core reads in the order data flows: a module
//! never uses one later in this list.
//!
//! Read from the sources (code only: doc links may point anywhere, and a
//! module's own unit tests may use what they like).

#[path = "support/sources.rs"]
mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sources::rust_sources;

/// The core, lowest first.
const LAYERS: &[&str] = &[
    "protocol",
    "outbox",
    "mailbox",
    "pubsub",
    "presence",
    "connection",
    "socket",
    "channel",
    "dispatch",
    "transport",
    "endpoint",
];

/// Modules that only re-export or exist for the macros and fuzzers.
const OUTSIDE: &[&str] = &["lib", "__private", "__fuzz"];

/// The code of a source file: comments and the unit-test module removed.
fn code(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module named after `crate::` in `code`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.insert(name);
        }
    }
    found
}

/// The crates whose modules are checked for cycles, by folder.
const CRATES: &[&str] =
    &["channels-protocol", "channels-wire", "channels-client", "channels-runtime", "channels-macros"];

/// The graph of the runtime's modules.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    graph_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// The graph of the modules of the crate whose sources are in `src`.
fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = src.to_path_buf();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (relative, source) in rust_sources(&src) {
        let first = relative.split('/').next().unwrap();
        let module = first.trim_end_matches(".rs").to_owned();
        if OUTSIDE.contains(&module.as_str()) {
            continue;
        }
        let used = uses(&code(&source));
        let entry = graph.entry(module.clone()).or_default();
        // Items re-exported at the crate root (`crate::SocketOptions`)
        // are not modules.
        entry.extend(used.into_iter().filter(|m| *m != module && m.chars().next().is_some_and(char::is_lowercase)));
    }
    graph
}

/// A cycle through `from`, if there is one.
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut found = path[start..].to_vec();
        found.push(at.to_owned());
        return Some(found);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.to_owned());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(at.to_owned());
    None
}

#[test]
fn the_modules_have_no_import_cycle() {
    let graph = graph();
    assert!(graph.contains_key("dispatch") && graph.contains_key("pubsub"), "sources not found: {graph:?}");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cycles = Vec::new();
    for krate in CRATES {
        let graph = graph_of(&workspace.join(krate).join("src"));
        assert!(graph.len() > 1, "no modules found in {krate}/src");
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            if let Some(found) = cycle(&graph, module, &mut Vec::new(), &mut done) {
                cycles.push(format!("{krate}: {}", found.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_core_reads_in_the_order_data_flows() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (i, module) in LAYERS.iter().enumerate() {
        for used in graph.get(*module).into_iter().flatten() {
            if let Some(j) = LAYERS.iter().position(|m| m == used) {
                if j > i {
                    wrong.push(format!("{module} uses {used}, which comes after it"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_reader_sees_crate_paths() {
    let found = uses(&code("use crate::{outbox::Outbox, pubsub};\n// crate::endpoint\nlet x = crate::socket::Socket;"));
    assert_eq!(found, ["outbox", "pubsub", "socket"].map(String::from).into_iter().collect());
}
