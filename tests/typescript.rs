//! `phx_channels::typescript::render`: what a socket's channels become in
//! TypeScript. Encode's wire names, ts-rs's serde renames, `Option`, `Vec`,
//! nested types, enums; untyped handlers as `unknown`; typed replies and
//! errors; declared pushes; hand-written channels; name clashes; strict
//! mode. The channels are in `support/typed.rs`, shared with
//! `tests/wire_types.rs`, which checks what they send against these types.

use phx_channels::prelude::*;
use phx_channels::typescript::{render, render_strict, TypeScriptError};

#[path = "support/typed.rs"]
mod typed;

use typed::{Clean, Typed};

fn module() -> String {
    render::<Typed>().expect("renders")
}

#[track_caller]
fn has(module: &str, line: &str) {
    assert!(module.lines().any(|l| l == line), "missing line {line:?} in:\n{module}");
}

#[test]
fn encode_types_use_their_wire_names() {
    let m = module();
    has(
        &m,
        "export type Note = { noteId: number; by: string; editedAt?: string; parentId: number | null; \
         tags: Array<string>; replies: Array<Reply2>; votes: { [key in string]: Vote } };",
    );
    has(&m, r#"export type Reply2 = { "reply-text": string };"#);
    has(&m, "export type NoteJoined = { notes: Array<Note> };");
    assert!(!m.contains("secret"), "a field left out of the encoding stays out of the type");
}

#[test]
fn ts_rs_types_respect_serde() {
    let m = module();
    assert!(m.contains("export type NewNote = { bodyText: string, vote: Vote | null, };"), "{m}");
    assert!(m.contains(r#"export type Vote = { "kind": "up" } | { "kind": "down", reason: string | null, };"#), "{m}");
    assert!(m.contains("export type NotesParams = { since: number | null, };"), "{m}");
    assert_eq!(m.matches("export type Vote =").count(), 1, "declared once, used twice");
}

#[test]
fn channel_types() {
    let m = module();
    let notes = m.split("export type Notes = ").nth(1).and_then(|rest| rest.split("\n};").next()).unwrap_or_default();
    let expected = r#"{
  params: NotesParams;
  joined: NoteJoined;
  refused: JsonOrBinary;
  in: {
    "add": { payload: NewNote; reply: Note; error: Full | ValidationErrors };
    "plain": { payload: NewNote; reply: Reply2; error: InvalidPayload };
    "opaque": { payload: unknown; reply: unknown; error: unknown };
    "unruly": { payload: unknown; reply: never; error: ValidationErrors };
    "silent": { payload: JsonValue; reply: never; error: InvalidPayload };
    "quiet": { payload: JsonValue; reply: never; error: InvalidPayload };
    "raw": { payload: JsonOrBinary; reply: unknown; error: unknown };
  };
  out: {
    [event: `notes:${string}:new`]: Note;
    "cleared": JsonValue;
  };"#;
    assert_eq!(notes, expected, "in:\n{m}");
    has(&m, "export type Full = { limit: number };");
    has(&m, "export type ValidationErrors = { errors: FieldErrors };");
    has(
        &m,
        "export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;",
    );
    has(&m, "export type JsonOrBinary = JsonValue | ArrayBuffer;");
}

#[test]
fn routes_and_topics() {
    let m = module();
    has(&m, r#"export type Topic = `notes:${string}` | "lobby" | `lobby:${string}` | `raw:${string}`;"#);
    let of = "export type ChannelOf<T extends string> =\n  T extends `notes:${string}` ? Notes :\n  \
              T extends \"lobby\" ? Lobby :\n  T extends `lobby:${string}` ? Lobby2 :\n  \
              T extends `raw:${string}` ? Raw :\n  never;";
    assert!(m.contains(of), "{m}");
    has(&m, "export type Lobby2 = {");
    let raw = m.split("export type Raw = ").nth(1).unwrap_or_default();
    assert!(
        raw.starts_with(
            "{\n  params: unknown;\n  joined: unknown;\n  refused: JsonOrBinary;\n  \
             in: { [event: string]: { payload: unknown; reply: unknown; error: unknown } };\n  \
             out: { [event: string]: unknown };\n}"
        ),
        "{raw}"
    );
    assert!(m.contains("export function typedChannel<T extends Topic>("), "the typed layer follows");
}

mod clash {
    use super::*;

    pub mod a {
        #[derive(phx_channels::Encode)]
        pub struct Item {
            pub a: u8,
        }
    }
    pub mod b {
        #[derive(phx_channels::Encode)]
        pub struct Item {
            pub b: u8,
        }
    }

    socket! {
        pub Clashing {
            channel "x:*" => X;
        }
    }

    impl Connect for Clashing {
        type State = ();
        type Assigns = ();
        async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
            Ok(())
        }
    }

    pub struct X;

    #[channel(socket = Clashing, out = ["a" => a::Item, "b" => b::Item])]
    impl X {
        async fn join(_topic: Topic, _params: Value) -> Join<Self> {
            Ok((json!({}), X))
        }
    }

    #[test]
    fn two_types_of_one_name_are_an_error() {
        let error = render::<Clashing>().unwrap_err();
        let TypeScriptError::NameClash(clash) = &error else { panic!("{error}") };
        assert_eq!(clash.name, "Item");
        assert!(clash.first.ends_with("a::Item") && clash.second.ends_with("b::Item"), "{clash:?}");
        assert!(error.to_string().contains("two types are named `Item` in TypeScript"), "{error}");
    }
}

/// `render_strict` names every `unknown` the module would have: where, the
/// Rust type, why.
#[test]
fn strict_names_every_unknown() {
    let error = render_strict::<Typed>().unwrap_err();
    let TypeScriptError::Unknown(unknowns) = &error else { panic!("{error}") };
    let lines: Vec<String> = unknowns.iter().map(ToString::to_string).collect();
    let notes = "channel `Notes` (topics `notes:*`)";
    let expected = [
        format!("{notes}, event \"opaque\", payload: `typescript::typed::Opaque` is `unknown`: it has no TypeScript"),
        format!("{notes}, event \"opaque\", reply is `unknown`: the Rust return type does not say what is sent"),
        format!("{notes}, event \"opaque\", error reply is `unknown`: the Rust return type"),
        format!("{notes}, event \"unruly\", payload: `typescript::typed::Unruly` is `unknown`: it has no TypeScript"),
        format!("{notes}, event \"raw\", reply is `unknown`"),
        "channel `Lobby` (topics `lobby`), event \"hello\", reply is `unknown`".to_owned(),
        "channel `Lobby` (topics `lobby`), pushes is `unknown`: the channel does not declare what it pushes: add `out = [".to_owned(),
        "channel `Lobby2` (topics `lobby:*`), event \"hello\", reply is `unknown`".to_owned(),
        "channel `Raw` (topics `raw:*`), join params is `unknown`: nothing describes it".to_owned(),
        "channel `Raw` (topics `raw:*`), events is `unknown`: the channel does not list its events (a hand-written `Channel` impl)".to_owned(),
    ];
    for line in &expected {
        assert!(lines.iter().any(|l| l.starts_with(line.as_str())), "no {line:?} in:\n{}", lines.join("\n"));
    }
    assert_eq!(lines.len(), 16, "{}", lines.join("\n"));
    assert!(error.to_string().starts_with("the TypeScript would say `unknown` in 16 place(s):\n  - channel `Notes`"));
    // Strict or not, the module is the same; `render` writes it.
    assert!(render::<Typed>().is_ok());
}

/// A socket typed throughout: `render_strict` writes it, without `unknown`
/// outside the fixed layer, presence events typed over the app's meta.
#[test]
fn a_typed_socket_renders_strictly() {
    let m = render_strict::<Clean>().unwrap_or_else(|e| panic!("{e}"));
    let (types, _layer) = m.split_once("// The typed layer over phoenix.js").unwrap();
    assert!(!types.contains("unknown"), "{types}");
    has(&m, "export type PresenceMeta<M> = M & { phx_ref: string; phx_ref_prev?: string };");
    has(&m, "export type PresenceState<M> = { [key: string]: { metas: Array<PresenceMeta<M>> } };");
    has(&m, "export type PresenceDiff<M> = { joins: PresenceState<M>; leaves: PresenceState<M> };");
    has(&m, "export type Online = { online_at: string };");
    has(&m, r#"    "presence_state": PresenceState<Online>;"#);
    has(&m, r#"    "presence_diff": PresenceDiff<Online>;"#);
    has(&m, r#"    "echo": { payload: JsonOrBinary; reply: JsonOrBinary; error: never };"#);
    has(&m, r#"    "add": { payload: NewNote; reply: Note; error: Full | ValidationErrors };"#);
    assert_eq!(m, render::<Clean>().unwrap(), "strict writes what render writes");
}
