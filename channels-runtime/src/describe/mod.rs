//! What a channel says about the types of its messages: join params and
//! reply, each event's payload, reply and error reply, the events it pushes.
//! `#[channel]` writes a [`ChannelShape`] for each channel and
//! [`typescript`](crate::typescript) renders a socket's shapes as a
//! TypeScript module.
//!
//! A type is described by a [`TypeFn`]: a function that writes how
//! TypeScript refers to the type and records the named types that needs in
//! [`Declarations`]. Where it comes from, best first: [`TypeScript`]
//! (implemented by `#[derive(Encode)]`, so the names are the encoded ones,
//! and here for the runtime's own types), `ts_rs::TS` (with the
//! `typescript` feature: payload types that derive it, serde renames
//! respected), and `unknown` for every other type, so typing is opt-in and
//! an untyped handler still compiles. Every `unknown` written is recorded
//! ([`Declarations::unknowns`]) with where it is and why, for
//! `typescript::render_strict` to refuse and name.

mod presence;
#[doc(hidden)]
pub mod probe;

pub use presence::{PresenceDiff, PresenceState};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::protocol::Payload;

/// Writes how TypeScript refers to a type (`"string"`, `"Comment"`,
/// `"Array<Comment>"`), declaring the named types it uses.
pub type TypeFn = fn(&mut Declarations) -> String;

/// The named types a module declares, in the order they were first needed,
/// and every place it had to write `unknown`.
#[derive(Debug, Default)]
pub struct Declarations {
    order: Vec<String>,
    /// Name → (the Rust type it was declared for, the statement; empty
    /// while it is being written, so recursive types terminate).
    by_name: HashMap<String, (String, String)>,
    clashes: Vec<Clash>,
    /// Where the module is being written, outermost first.
    at: Vec<String>,
    unknowns: Vec<Unknown>,
}

/// A place the module writes `unknown`: where, which Rust type, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// Where, outermost first: the channel, the message, the fields.
    pub at: Vec<String>,
    /// The Rust type written `unknown`, when one is named there.
    pub rust_type: Option<String>,
    /// Why, and how to type it.
    pub why: String,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at.join(", "))?;
        if let Some(rust_type) = &self.rust_type {
            write!(f, ": `{rust_type}`")?;
        }
        write!(f, " is `unknown`: {}", self.why)
    }
}

/// Two Rust types that want the same TypeScript name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The TypeScript name.
    pub name: String,
    /// The Rust type that got the name.
    pub first: String,
    /// The Rust type that wanted it too.
    pub second: String,
}

impl Declarations {
    /// No declarations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `name` for the Rust type `rust_type` with the statement
    /// `statement` writes (`export type Name = ..;`), unless it is declared
    /// already, and returns `name` for the caller to refer to it.
    pub fn declare(&mut self, name: &str, rust_type: &str, statement: impl FnOnce(&mut Self) -> String) -> String {
        match self.by_name.get(name) {
            Some((first, _)) => {
                if first != rust_type {
                    let clash = Clash { name: name.to_owned(), first: first.clone(), second: rust_type.to_owned() };
                    if !self.clashes.contains(&clash) {
                        self.clashes.push(clash);
                    }
                }
            }
            None => {
                self.order.push(name.to_owned());
                self.by_name.insert(name.to_owned(), (rust_type.to_owned(), String::new()));
                let text = statement(self);
                if let Some(entry) = self.by_name.get_mut(name) {
                    entry.1 = text;
                }
            }
        }
        name.to_owned()
    }

    /// Whether `name` is declared (or being declared).
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The statements, in the order their names were first needed.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        self.order.iter().filter_map(|name| self.by_name.get(name)).map(|(_, text)| text.as_str())
    }

    /// Names two Rust types wanted.
    pub fn clashes(&self) -> &[Clash] {
        &self.clashes
    }

    /// Runs `write` with `place` (a channel, a message, a field) as where
    /// the module is: an `unknown` written meanwhile is recorded there.
    pub fn within<R>(&mut self, place: impl Into<String>, write: impl FnOnce(&mut Self) -> R) -> R {
        self.at.push(place.into());
        let out = write(self);
        self.at.pop();
        out
    }

    /// Records an `unknown` for `rust_type` (if one is named) at the
    /// current place, saying `why`, and returns `"unknown"`.
    pub fn unknown(&mut self, rust_type: Option<&str>, why: impl Into<String>) -> String {
        let unknown = Unknown { at: self.at.clone(), rust_type: rust_type.map(str::to_owned), why: why.into() };
        if !self.unknowns.contains(&unknown) {
            self.unknowns.push(unknown);
        }
        "unknown".to_owned()
    }

    /// Every place the module wrote `unknown`, in order.
    pub fn unknowns(&self) -> &[Unknown] {
        &self.unknowns
    }
}

/// A type whose TypeScript this crate or `#[derive(Encode)]` knows.
pub trait TypeScript {
    /// Writes how TypeScript refers to the type, declaring what it needs.
    fn typescript(declarations: &mut Declarations) -> String;
}

/// The response of a handler that says nothing of its type (a [`Reply`](crate::reply::Reply)):
/// `unknown`.
#[derive(Debug)]
pub enum Untyped {}

/// A response that is never sent: that of a handler returning `()`, the
/// error of a [`TypedReply`](crate::reply::TypedReply) without an error
/// type. `never`.
#[derive(Debug)]
pub enum Never {}

impl TypeScript for Untyped {
    fn typescript(declarations: &mut Declarations) -> String {
        declarations.unknown(
            None,
            "the Rust return type does not say what is sent (a `Reply`, or a type naming `impl Trait`): return \
             `TypedReply<T>` (or `TypedReply<T, E>`, `()` for no reply) from a handler, `Join<Self, R>` from `join`",
        )
    }
}

impl TypeScript for Never {
    fn typescript(_: &mut Declarations) -> String {
        "never".to_owned()
    }
}

/// Any JSON: `JsonValue`, `number | string | boolean | Array<JsonValue> |
/// { [key in string]: JsonValue } | null`, which client code narrows before
/// use. With the `typescript` feature it is ts-rs's own declaration, so a
/// module with ts-rs types holding a `Value` declares it once.
impl TypeScript for serde_json::Value {
    #[cfg(feature = "typescript")]
    fn typescript(declarations: &mut Declarations) -> String {
        probe::ts_rs_type::<serde_json::Value>(declarations)
    }

    #[cfg(not(feature = "typescript"))]
    fn typescript(declarations: &mut Declarations) -> String {
        declarations.declare("JsonValue", std::any::type_name::<serde_json::Value>(), |_| {
            "export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;"
                .to_owned()
        })
    }
}

/// JSON or binary: `JsonOrBinary`, `JsonValue | ArrayBuffer` (phoenix.js
/// sends and receives binary payloads as `ArrayBuffer`s).
impl TypeScript for Payload {
    fn typescript(declarations: &mut Declarations) -> String {
        let json = serde_json::Value::typescript(declarations);
        declarations.declare("JsonOrBinary", "phx_channels::Payload", |_| {
            format!(
                "/** A payload as it travels: JSON, or binary (an `ArrayBuffer` in phoenix.js). */\n\
                 export type JsonOrBinary = {json} | ArrayBuffer;"
            )
        })
    }
}

impl<T: TypeScript + ?Sized> TypeScript for &T {
    fn typescript(declarations: &mut Declarations) -> String {
        T::typescript(declarations)
    }
}

/// `T | null`, as serde writes `None`.
impl<T: TypeScript> TypeScript for Option<T> {
    fn typescript(declarations: &mut Declarations) -> String {
        format!("{} | null", T::typescript(declarations))
    }
}

macro_rules! wrappers {
    ($($wrapper:ident),*) => {$(
        impl<T: TypeScript + ?Sized> TypeScript for $wrapper<T> {
            fn typescript(declarations: &mut Declarations) -> String {
                T::typescript(declarations)
            }
        }
    )*};
}
wrappers!(Box, Arc);

macro_rules! lists {
    ($($list:ty),*) => {$(
        impl<T: TypeScript> TypeScript for $list {
            fn typescript(declarations: &mut Declarations) -> String {
                format!("Array<{}>", T::typescript(declarations))
            }
        }
    )*};
}
lists!(Vec<T>, VecDeque<T>, [T]);

macro_rules! maps {
    ($($map:ident),*) => {$(
        /// Keys are strings on the wire, whatever their Rust type.
        impl<K, V: TypeScript> TypeScript for $map<K, V> {
            fn typescript(declarations: &mut Declarations) -> String {
                format!("{{ [key: string]: {} }}", V::typescript(declarations))
            }
        }
    )*};
}
maps!(HashMap, BTreeMap);

/// Types the rejection of a payload that does not decode:
/// `{"reason": "invalid payload", "path", "message"}`.
pub fn invalid_payload(declarations: &mut Declarations) -> String {
    declarations.declare("InvalidPayload", "phx_channels::InvalidPayload", |_| {
        "/** The error reply to a payload that does not fit the handler's type. */\n\
         export type InvalidPayload = { reason: \"invalid payload\"; path: string; message: string };"
            .to_owned()
    })
}

/// Types the rejection of a `Valid<T>` payload: Ecto's `{"errors": {field:
/// [message, ..]}}`, nested for nested fields and lists.
pub fn validation_errors(declarations: &mut Declarations) -> String {
    declarations.declare("FieldErrors", "phx_channels::changeset::FieldErrors", |_| {
        "/** Messages per field; nested objects and lists of them for nested fields. */\n\
         export type FieldErrors = { [field: string]: string[] | FieldErrors | FieldErrors[] };"
            .to_owned()
    });
    declarations.declare("ValidationErrors", "phx_channels::changeset::Errors", |_| {
        "/** The error reply to a payload that fails its rules (a `Valid<T>` argument). */\n\
         export type ValidationErrors = { errors: FieldErrors };"
            .to_owned()
    })
}

/// `export type Name = { field: T; optional?: U };` for a struct that
/// encodes these fields (wire name, left out when `None`, type), as
/// `#[derive(Encode)]` declares it.
pub fn object(name: &str, fields: &[(&str, bool, TypeFn)], declarations: &mut Declarations) -> String {
    if fields.is_empty() {
        return format!("export type {name} = Record<string, never>;");
    }
    let fields: Vec<String> = fields
        .iter()
        .map(|(wire, optional, type_fn)| {
            let key = if is_identifier(wire) { (*wire).to_owned() } else { serde_json::Value::from(*wire).to_string() };
            let optional = if *optional { "?" } else { "" };
            let ty = declarations.within(format!("field `{wire}` of `{name}`"), *type_fn);
            format!("{key}{optional}: {ty}")
        })
        .collect();
    format!("export type {name} = {{ {} }};", fields.join("; "))
}

/// Whether `name` can be a property name unquoted.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `never`: what a payload argument that takes any payload rejects.
pub fn never(_: &mut Declarations) -> String {
    "never".to_owned()
}

/// `unknown`, for a place nothing describes (recorded).
pub fn unknown(declarations: &mut Declarations) -> String {
    declarations.unknown(None, "nothing describes it")
}

/// `unknown` for the Rust type `T`, which has no TypeScript this crate can
/// find (recorded with its name).
pub fn unknown_type<T: ?Sized>(declarations: &mut Declarations) -> String {
    declarations.unknown(
        Some(std::any::type_name::<T>()),
        "it has no TypeScript: derive `phx_channels::Encode` on a type the server sends, `ts_rs::TS` on one \
         clients send (with the `typescript` feature)",
    )
}

/// The response of a refused join: whatever `JoinError` carries, JSON
/// (`{"reason": ..}` from `JoinError::reason`, `?` and the runtime's own
/// refusals) or binary.
pub fn refusal(declarations: &mut Declarations) -> String {
    Payload::typescript(declarations)
}

/// The response types a handler's return type sends: `Ok` for an ok
/// reply, `Error` for an error reply. The generated TypeScript reads them.
///
/// Implemented for [`Reply`](crate::reply::Reply) ([`Untyped`] both),
/// `()` ([`Never`]), [`TypedReply`](crate::reply::TypedReply) and a
/// `Result` of any of them. A return type without it is untyped.
pub trait ReplyTypes {
    /// The response of an ok reply.
    type Ok: ?Sized;
    /// The response of an error reply the handler sends itself.
    type Error: ?Sized;
}

/// The response type of a `join` result: `R` in `Join<Self, R>`.
pub trait JoinTypes {
    /// The response of an accepted join.
    type Response: ?Sized;
}

/// One `#[handle_in]` event.
#[derive(Debug, Clone)]
pub struct EventShape {
    /// The event name.
    pub event: &'static str,
    /// The payload the client pushes.
    pub payload: TypeFn,
    /// The response of an ok reply.
    pub reply: TypeFn,
    /// The responses of an error reply: the handler's own, and the
    /// rejection of a payload that does not fit.
    pub errors: [TypeFn; 2],
}

/// The types of one channel, as `#[channel]` describes it.
#[derive(Debug, Clone)]
pub struct ChannelShape {
    /// The channel's type name, e.g. `CommentsChannel`.
    pub name: &'static str,
    /// The join params; the response of an accepted join; the response of
    /// a refused one.
    pub join: [TypeFn; 3],
    /// `None` for a channel that does not list its events (a hand-written
    /// `Channel` impl): any event, untyped.
    pub events: Option<Vec<EventShape>>,
    /// The events the channel pushes, as declared with
    /// `#[channel(out = ["event" => Type])]`: the name (a `*` stands for
    /// any text) and the payload. `None`: not declared, any event, untyped.
    pub out: Option<Vec<(&'static str, TypeFn)>>,
}

impl ChannelShape {
    /// A channel that says nothing: any join params, any event, untyped.
    pub fn untyped(name: &'static str) -> Self {
        ChannelShape { name, join: [unknown, unknown, refusal], events: None, out: None }
    }
}
