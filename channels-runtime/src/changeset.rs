//! Changesets for handler payloads: decode, validate, and answer every
//! failing field at once, in Ecto's shape.
//!
//! A Phoenix channel validates its input with a changeset
//! (`cast(params, [:content]) |> validate_required([:content])`) and replies
//! `{"errors": {"content": ["can't be blank"]}}`. Here the payload type
//! derives `serde::Deserialize` and [`validator::Validate`], and a handler
//! takes [`Valid<T>`]: it runs only with a `T` that decoded and passed its
//! rules; otherwise the client gets [`Errors`], naming every failing field —
//! missing, null and wrong-typed fields as well as rule failures — in one
//! answer.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::changeset::{cast, Ecto, Errors};
//! use phx_channels::protocol::Payload;
//! use serde::Deserialize;
//! use validator::Validate;
//!
//! #[derive(Debug, Deserialize, Validate)]
//! #[serde(rename_all = "camelCase")]
//! struct NewComment {
//!     #[validate(length(min = 1, max = 280))]
//!     content: String,
//!     #[validate(range(min = 1, max = 5, message = "pick %{min} to %{max} stars"))]
//!     star_rating: u8,
//! }
//!
//! let payload = Payload::json(&serde_json::json!({"starRating": 9})).unwrap();
//! let errors: Errors = cast::<NewComment, Ecto>(&payload).unwrap_err();
//! assert_eq!(
//!     serde_json::to_string(&errors).unwrap(),
//!     r#"{"errors":{"content":["can't be blank"],"starRating":["pick 1 to 5 stars"]}}"#
//! );
//!
//! let payload = Payload::json(&serde_json::json!({"content": "hi", "starRating": 5})).unwrap();
//! let comment = cast::<NewComment, Ecto>(&payload).unwrap();
//! assert_eq!(comment.content, "hi");
//! ```
//!
//! # How every field is found
//!
//! A payload that decodes and validates costs one decode straight from its
//! text. Otherwise — serde stops at the first error — [`cast`] parses the
//! payload once into a [`serde_json::Value`] and deserializes `T` from it
//! through its own deserializer, which knows the path of every error and
//! gets serde's `missing_field` calls with the exact field name. Each
//! failing field is recorded, replaced by a placeholder that fits its type
//! (`null`, `""`, `0`, `false`, `[]`, `{}` or an enum's first variant, the
//! one serde's "expected …" names first), and
//! decoding is tried again until `T` decodes. Then the rules run, and rule
//! messages for fields that already have a decoding error are dropped (as
//! Ecto's `validate_required` skips fields that failed to cast).
//!
//! # Bounded work
//!
//! The payload is parsed with serde_json's recursion limit (128 levels);
//! deeper nesting is answered as an invalid payload. Every retry walks only
//! what the type reads (ignored fields are skipped without descending), at
//! most [`MAX_PASSES`] retries are made, and all of them together may visit
//! at most a fixed multiple of the payload's node count. Past that, the
//! errors found so far are the answer.
//!
//! # Field names
//!
//! validator reports Rust field names; serde's wire names may differ
//! (`rename_all`, `rename`). The wire name is found among the names the
//! struct's `Deserialize` declares: the Rust name itself, or the one name
//! that a serde case convention (`camelCase`, `PascalCase`, `kebab-case`,
//! `SCREAMING_SNAKE_CASE`, …) makes of it. A `#[serde(rename = "x")]` that no
//! convention explains cannot be matched: its rule errors are reported under
//! the Rust name (its decoding errors always use the wire name). Errors from
//! a struct-level `#[validate(schema(..))]` are reported under `__all__`, as
//! validator names them.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
/// The validation crate the rules come from, for its derive and rule types.
///
/// An application adds `validator = { version = "0.21", features = ["derive"] }`
/// to its own `Cargo.toml` (the derive expands to paths under `::validator`),
/// or points the derive here with `#[validate(crate = "phx_channels::changeset::validator")]`.
pub use validator;
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use crate::protocol::Payload;

/// The most decoding passes [`cast`] makes over one payload.
pub const MAX_PASSES: usize = 64;

/// Every pass together may visit this many times the payload's nodes
/// (plus [`BUDGET_SLACK`], so small payloads of many bad fields are still
/// reported whole).
const BUDGET_FACTOR: usize = 8;
const BUDGET_SLACK: usize = 4096;

/// The two messages for a field that could not be read at all.
///
/// Rule failures have their own messages (the rule's `message`, or an Ecto
/// default); these two are for fields that never reached the rules. The
/// defaults are Ecto's, so an implementation overrides only what it wants:
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::changeset::Messages;
///
/// /// Every unreadable field is "can't be blank", whatever was sent.
/// struct BlankOnly;
///
/// impl Messages for BlankOnly {
///     fn invalid(field: &str) -> String {
///         Self::blank(field)
///     }
/// }
/// assert_eq!(BlankOnly::invalid("content"), "can't be blank");
/// ```
pub trait Messages {
    /// A required field that is missing or `null` (and a `required` rule).
    fn blank(field: &str) -> String {
        let _ = field;
        "can't be blank".to_owned()
    }

    /// A field of the wrong type, or a value its type refuses.
    fn invalid(field: &str) -> String {
        let _ = field;
        "is invalid".to_owned()
    }
}

/// Ecto's messages: "can't be blank" and "is invalid".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ecto;

impl Messages for Ecto {}

/// The rule of Ecto's `validate_required` for text: a string that is empty
/// or only whitespace is blank ("can't be blank", [`Messages::blank`]), as
/// Ecto trims before it looks. A `validator` custom rule, for any string
/// field (`String`, `&str`, `Cow<str>`; on an `Option`, only a present
/// value is checked: add `required` to refuse a missing one):
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::changeset::{cast, Ecto};
/// use phx_channels::protocol::Payload;
/// use validator::Validate;
///
/// #[derive(Debug, serde::Deserialize, Validate)]
/// struct NewComment {
///     #[validate(custom(function = "phx_channels::changeset::not_blank"), length(max = 280))]
///     content: String,
/// }
///
/// let blank = Payload::json(&serde_json::json!({"content": " \t\n"})).unwrap();
/// let errors = cast::<NewComment, Ecto>(&blank).unwrap_err();
/// assert_eq!(errors.messages("content"), ["can't be blank"]);
/// let padded = Payload::json(&serde_json::json!({"content": "  hi  "})).unwrap();
/// assert_eq!(cast::<NewComment, Ecto>(&padded).unwrap().content, "  hi  "); // checked, not changed
/// ```
///
/// The error's code is `blank`, so the message is [`Messages::blank`] of
/// the payload's `Messages` (set `message = ".."` on the rule for another).
pub fn not_blank<T: AsRef<str> + ?Sized>(value: &T) -> Result<(), ValidationError> {
    if value.as_ref().trim().is_empty() {
        return Err(ValidationError::new("blank"));
    }
    Ok(())
}

/// A handler argument holding a payload that decoded into `T` and passed
/// `T`'s validation rules:
/// `async fn add(&mut self, new: Valid<NewComment>, socket: &mut Socket<UserSocket>)`.
///
/// A payload that does not is answered with [`Errors`]; `M` chooses the
/// messages for unreadable fields ([`Ecto`] by default).
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::changeset::Valid;
/// use phx_channels::protocol::Payload;
///
/// #[derive(Debug, serde::Deserialize, validator::Validate)]
/// struct NewComment {
///     #[validate(length(min = 1))]
///     content: String,
/// }
///
/// let payload = Payload::json(&serde_json::json!({"content": "hi"})).unwrap();
/// let new = Valid::<NewComment>::from_payload(&payload).unwrap();
/// assert_eq!(new.content, "hi"); // through `Deref`
/// let comment: NewComment = new.into_inner();
/// # let _ = comment;
///
/// let errors = Valid::<NewComment>::from_payload(&Payload::empty()).unwrap_err();
/// assert_eq!(errors.messages("content"), ["can't be blank"]);
/// ```
pub struct Valid<T, M = Ecto>(pub T, pub PhantomData<fn() -> M>);

impl<T, M> Valid<T, M> {
    /// Wraps a value the caller vouches for.
    pub fn new(value: T) -> Self {
        Valid(value, PhantomData)
    }

    /// The valid value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Validate, M: Messages> Valid<T, M> {
    /// Decodes and validates a payload: [`cast`], wrapped.
    pub fn from_payload(payload: &Payload) -> Result<Self, Errors> {
        cast::<T, M>(payload).map(Valid::new)
    }
}

impl<T, M> Deref for Valid<T, M> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T, M> DerefMut for Valid<T, M> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug, M> fmt::Debug for Valid<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Valid").field(&self.0).finish()
    }
}

/// Decodes `payload` into `T` and runs `T`'s rules: a valid `T`, or every
/// failing field with its messages.
///
/// Missing and `null` fields get [`Messages::blank`], wrong-typed ones
/// [`Messages::invalid`]; rule failures get the rule's `message` or an Ecto
/// default. A payload that is not a JSON object (binary ones included) is
/// answered with [`Messages::invalid`] under [`Errors::PAYLOAD`].
pub fn cast<T: DeserializeOwned + Validate, M: Messages>(payload: &Payload) -> Result<T, Errors> {
    cast_counted::<T, M>(payload).0
}

/// [`cast`], also telling how many passes over the parsed payload it made
/// (0 when the payload decoded and validated straight from its text).
fn cast_counted<T: DeserializeOwned + Validate, M: Messages>(payload: &Payload) -> (Result<T, Errors>, usize) {
    let invalid_payload = || {
        let mut errors = Errors::new();
        errors.add(Errors::PAYLOAD, M::invalid(Errors::PAYLOAD));
        errors
    };
    let Payload::Json(raw) = payload else { return (Err(invalid_payload()), 0) };
    // The common case, a valid payload, costs one decode straight from the
    // text. (Only an object: serde would read `["hi"]` as a struct too.)
    if raw.get().trim_start().starts_with('{') {
        if let Ok(value) = serde_json::from_str::<T>(raw.get()) {
            if value.validate().is_ok() {
                return (Ok(value), 0);
            }
        }
    }
    let root: Value = match serde_json::from_str(raw.get()) {
        Ok(value @ Value::Object(_)) => value,
        _ => return (Err(invalid_payload()), 0),
    };
    let original = root.clone();
    let budget = Cell::new(BUDGET_SLACK + BUDGET_FACTOR * nodes(&original));
    let mut cast = Cast { root, budget, failures: Vec::new(), placeholders: Vec::new() };
    let (decoded, passes) = cast.run::<T>();
    let Cast { failures, placeholders, .. } = cast;

    let mut found: Vec<(Path, String)> = failures
        .iter()
        .map(|(path, failure)| {
            let field = last_key(path).unwrap_or(Errors::PAYLOAD);
            let message = match failure {
                Failure::Blank => M::blank(field),
                Failure::Invalid => M::invalid(field),
            };
            (path.clone(), message)
        })
        .collect();

    let value = match decoded {
        Some((value, names)) => match value.validate() {
            Ok(()) => Some(value),
            Err(rules) => {
                let mut broken = Vec::new();
                flatten_rules(&rules, &mut Vec::new(), &mut broken);
                for (rust_path, error) in broken {
                    let (path, matched) = names.wire_path(&rust_path);
                    if placeholders.iter().any(|p| path.starts_with(p)) {
                        continue;
                    }
                    // A Rust name whose wire name is unknown may be the very
                    // field that holds a placeholder: say nothing rather
                    // than report the placeholder's rule failure.
                    let parent = &path[..path.len().saturating_sub(1)];
                    if !matched && placeholders.iter().any(|p| p.len() == path.len() && p.starts_with(parent)) {
                        continue;
                    }
                    let message = rule_message::<M>(last_key(&path).unwrap_or(Errors::PAYLOAD), error);
                    found.push((path, message));
                }
                None
            }
        },
        None => None,
    };
    match value {
        Some(value) if found.is_empty() => (Ok(value), passes),
        _ => {
            let mut errors = Errors::new();
            for (path, message) in found {
                errors.insert(&path, message, Some(&original));
            }
            if errors.is_empty() {
                errors = invalid_payload();
            }
            (Err(errors), passes)
        }
    }
}

/// Field → messages, in Ecto's shape: serializes to
/// `{"errors": {"field": ["message", ..], ..}}`, fields in sorted order.
///
/// Nested structs nest (`{"errors": {"address": {"city": [..]}}}`) and
/// lists of structs become lists with `{}` for the valid items, as Ecto's
/// `traverse_errors` renders embeds.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::changeset::Errors;
///
/// let mut errors = Errors::new();
/// errors.add("content", "can't be blank");
/// assert_eq!(errors.to_string(), "content: can't be blank");
/// assert_eq!(
///     errors.into_payload().as_json(),
///     Some(r#"{"errors":{"content":["can't be blank"]}}"#)
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    fields: BTreeMap<String, FieldErrors>,
}

/// The errors of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrors {
    /// Messages about the field itself.
    Messages(Vec<String>),
    /// The errors of a nested struct's fields.
    Nested(Errors),
    /// One entry per item of a list of structs, empty for valid items.
    List(Vec<Errors>),
}

/// One step into a payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

type Path = Vec<Seg>;

impl Errors {
    /// The key under which a payload that is not a JSON object is reported.
    pub const PAYLOAD: &'static str = "payload";

    /// No errors.
    pub fn new() -> Self {
        Errors::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// How many fields have errors.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Adds a message to a field, as Ecto's `add_error` does: for checks a
    /// handler makes itself (a unique name already taken, …).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.insert(&[Seg::Key(field.into())], message.into(), None);
        self
    }

    /// The errors of one field.
    pub fn get(&self, field: &str) -> Option<&FieldErrors> {
        self.fields.get(field)
    }

    /// The messages about one field itself (none if it has none, or only
    /// nested ones).
    pub fn messages(&self, field: &str) -> &[String] {
        match self.fields.get(field) {
            Some(FieldErrors::Messages(messages)) => messages,
            _ => &[],
        }
    }

    /// Every field with its errors, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldErrors)> {
        self.fields.iter().map(|(field, errors)| (field.as_str(), errors))
    }

    /// Every message with its dotted path (`address.city`, `lines.1.qty`),
    /// depth first in sorted order.
    pub fn flatten(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        self.flatten_into("", &mut out);
        out
    }

    fn flatten_into<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a str)>) {
        for (field, errors) in &self.fields {
            let path = if prefix.is_empty() { field.clone() } else { format!("{prefix}.{field}") };
            match errors {
                FieldErrors::Messages(messages) => out.extend(messages.iter().map(|m| (path.clone(), m.as_str()))),
                FieldErrors::Nested(nested) => nested.flatten_into(&path, out),
                FieldErrors::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        item.flatten_into(&format!("{path}.{i}"), out);
                    }
                }
            }
        }
    }

    /// The `{"errors": {..}}` payload, for a reply.
    pub fn into_payload(self) -> Payload {
        Payload::from(self.to_value())
    }

    /// The `{"errors": {..}}` object.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "errors": Fields(&self.fields) })
    }

    /// Records `message` at `path`. A field with messages of its own keeps
    /// them and drops deeper ones (the field as a whole is wrong); a path
    /// ending in a list index is the list's own error, as Ecto reports an
    /// array of scalars. `node` is the payload at this level, for the length
    /// of lists.
    fn insert(&mut self, path: &[Seg], message: String, node: Option<&Value>) {
        let Some((Seg::Key(field), rest)) = path.split_first() else {
            return self.insert(&[Seg::Key(Errors::PAYLOAD.to_owned())], message, None);
        };
        let node = node.and_then(|n| n.get(field));
        let entry = self.fields.entry(field.clone());
        match rest {
            [] | [Seg::Index(_)] | [Seg::Index(_), Seg::Index(_), ..] => {
                let errors = entry.or_insert_with(|| FieldErrors::Messages(Vec::new()));
                if !matches!(errors, FieldErrors::Messages(_)) {
                    *errors = FieldErrors::Messages(Vec::new());
                }
                if let FieldErrors::Messages(messages) = errors {
                    if !messages.contains(&message) {
                        messages.push(message);
                    }
                }
            }
            [Seg::Key(_), ..] => {
                if let FieldErrors::Nested(nested) = entry.or_insert_with(|| FieldErrors::Nested(Errors::new())) {
                    nested.insert(rest, message, node);
                }
            }
            [Seg::Index(i), deeper @ ..] => {
                if let FieldErrors::List(items) = entry.or_insert_with(|| FieldErrors::List(Vec::new())) {
                    let len = node.and_then(Value::as_array).map_or(0, Vec::len).max(i + 1).max(items.len());
                    items.resize_with(len, Errors::new);
                    items[*i].insert(deeper, message, node.and_then(|n| n.get(*i)));
                }
            }
        }
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = (&'a String, &'a FieldErrors);
    type IntoIter = std::collections::btree_map::Iter<'a, String, FieldErrors>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter()
    }
}

impl Serialize for Errors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("errors", &Fields(&self.fields))?;
        map.end()
    }
}

/// The inner `{"field": [..]}` map, without the `errors` wrapper.
struct Fields<'a>(&'a BTreeMap<String, FieldErrors>);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, errors) in self.0 {
            map.serialize_entry(field, errors)?;
        }
        map.end()
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldErrors::Messages(messages) => messages.serialize(serializer),
            FieldErrors::Nested(nested) => Fields(&nested.fields).serialize(serializer),
            FieldErrors::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Fields(&item.fields))?;
                }
                seq.end()
            }
        }
    }
}

impl fmt::Display for Errors {
    /// `content: can't be blank; address.city: can't be blank`, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (path, message)) in self.flatten().into_iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{path}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl From<Errors> for Payload {
    fn from(errors: Errors) -> Self {
        errors.into_payload()
    }
}

// ---------------------------------------------------------------------------
// Decoding with every failure found.

/// What a field that could not be read gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Missing or null.
    Blank,
    /// Wrong type, refused value, or an unknown field a type denies.
    Invalid,
}

/// A decoding failure, with where it happened.
#[derive(Debug, thiserror::Error)]
#[error("payload does not fit the type")]
struct CastError {
    /// The path of the value that failed, innermost step first (steps are
    /// added as the error travels out).
    rev_path: Path,
    kind: Kind,
    /// Set by an enum's deserializer for errors at its own level.
    variant: Option<&'static str>,
}

#[derive(Debug)]
enum Kind {
    /// A struct at the path lacks this field.
    Missing(&'static str),
    /// A struct at the path denies this field.
    Unknown(String),
    /// The value was `null` where this was expected.
    Null(String),
    /// The value did not fit (what was expected, when serde said).
    Invalid(Option<String>),
    /// The work budget ran out.
    Exhausted,
}

/// What is known of the type that failed at a location, to pick a
/// placeholder it accepts.
#[derive(Debug, Clone, Copy, Default)]
struct Hint {
    /// One of [`PLACEHOLDERS`], from serde's "expected …".
    placeholder: Option<usize>,
    /// A variant name, when the type is an enum.
    variant: Option<&'static str>,
}

impl CastError {
    fn new(kind: Kind) -> Self {
        CastError { rev_path: Vec::new(), kind, variant: None }
    }

    fn within(mut self, seg: Seg) -> Self {
        self.rev_path.push(seg);
        self
    }

    /// The path of the field at fault.
    fn location(&self) -> Path {
        let mut path: Path = self.rev_path.iter().rev().cloned().collect();
        if let Kind::Missing(field) = &self.kind {
            path.push(Seg::Key((*field).to_owned()));
        } else if let Kind::Unknown(field) = &self.kind {
            path.push(Seg::Key(field.clone()));
        }
        path
    }
}

impl de::Error for CastError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        CastError::new(Kind::Invalid(None))
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        match unexpected {
            Unexpected::Unit => CastError::new(Kind::Null(expected.to_string())),
            _ => CastError::new(Kind::Invalid(Some(expected.to_string()))),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        CastError::new(Kind::Missing(field))
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        CastError::new(Kind::Unknown(field.to_owned()))
    }
}

/// The candidates tried in place of a field that failed.
const PLACEHOLDERS: usize = 6;

fn placeholder(i: usize) -> Value {
    match i {
        0 => Value::Null,
        1 => Value::String(String::new()),
        2 => Value::from(0),
        3 => Value::Bool(false),
        4 => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// The placeholder that serde's "expected …" names, if any.
fn hinted(expected: &str) -> Option<usize> {
    let primitive = |e: &str| {
        matches!(e.as_bytes().first(), Some(b'i' | b'u' | b'f'))
            && matches!(&e[1..], "8" | "16" | "32" | "64" | "128" | "size")
    };
    if expected.contains("string") || expected.contains("char") {
        Some(1)
    } else if primitive(expected) || expected.contains("integer") || expected.contains("number") {
        Some(2)
    } else if expected.contains("bool") {
        Some(3)
    } else if expected.contains("sequence") || expected.contains("tuple") || expected.contains("array") {
        Some(4)
    } else if expected.contains("struct") || expected.contains("map") {
        Some(5)
    } else {
        None
    }
}

/// One payload being decoded, and patched between passes.
struct Cast {
    root: Value,
    budget: Cell<usize>,
    /// The fields that could not be read, and why.
    failures: Vec<(Path, Failure)>,
    /// Where placeholders were put (the failures, and fields inside them).
    placeholders: Vec<Path>,
}

/// What a pass over the payload decoded, with the wire names of its structs.
type Decoded<T> = Option<(T, Names)>;

impl Cast {
    /// Decodes until `T` fits or the bounds are reached, recording the
    /// failures. Gives the value (with the structs' declared field names)
    /// and the number of passes.
    fn run<T: DeserializeOwned>(&mut self) -> (Decoded<T>, usize) {
        let mut tried: HashMap<Path, u8> = HashMap::new();
        let mut hints: HashMap<Path, Hint> = HashMap::new();
        for pass in 1..=MAX_PASSES {
            let error = {
                let ctx =
                    Ctx { budget: &self.budget, stack: RefCell::new(Vec::new()), names: RefCell::new(HashMap::new()) };
                match T::deserialize(ValueDe { value: &self.root, ctx: &ctx }) {
                    Ok(value) => {
                        let names = Names::from(ctx.names.into_inner());
                        return (Some((value, names)), pass);
                    }
                    Err(error) => error,
                }
            };
            if matches!(error.kind, Kind::Exhausted) {
                return (None, pass);
            }
            let mut at = error.location();
            // A bad item of a list of scalars is the list's fault (Ecto's
            // `{:array, _}`); patch the whole list, once.
            while matches!(at.last(), Some(Seg::Index(_))) {
                at.pop();
            }
            if at.is_empty() {
                self.failures.push((at, Failure::Invalid));
                return (None, pass);
            }
            let truncated = at.len() < error.rev_path.len() + usize::from(matches!(error.kind, Kind::Missing(_)));
            let inside_placeholder = self.placeholders.iter().any(|p| at.len() > p.len() && at.starts_with(p));
            let mask = tried.entry(at.clone()).or_insert(0);
            let first_here = *mask == 0;
            if first_here && !inside_placeholder {
                let failure = match error.kind {
                    Kind::Missing(_) | Kind::Null(_) => Failure::Blank,
                    _ => Failure::Invalid,
                };
                self.failures.push((at.clone(), failure));
            }
            if let Kind::Unknown(_) = error.kind {
                if !first_here || !remove(&mut self.root, &at) {
                    return (None, pass);
                }
                *mask = u8::MAX;
                continue;
            }
            let hint = hints.entry(at.clone()).or_default();
            if truncated {
                // The hint names the item's type; the list gets `[]`.
                hint.placeholder = Some(4);
            } else if let Kind::Null(expected) | Kind::Invalid(Some(expected)) = &error.kind {
                hint.placeholder = hinted(expected).or(hint.placeholder);
            }
            if !truncated {
                hint.variant = error.variant.or(hint.variant);
            }
            let untried = |i: &usize| *mask & (1 << i) == 0;
            let variant = hint.variant.filter(|_| untried(&PLACEHOLDERS)).map(|v| (PLACEHOLDERS, v));
            let next = variant
                .map(|(i, _)| i)
                .or(hint.placeholder.filter(untried))
                .or_else(|| (0..PLACEHOLDERS).find(untried));
            let Some(next) = next else {
                return (None, pass);
            };
            *mask |= 1 << next;
            let value = match variant {
                Some((_, name)) => Value::String(name.to_owned()),
                None => placeholder(next),
            };
            if !set(&mut self.root, &at, value) {
                return (None, pass);
            }
            if first_here {
                self.placeholders.push(at);
            }
        }
        (None, MAX_PASSES)
    }
}

/// The steps a pass that reads all of `value` spends: one per value, one
/// per list item and one per object key.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(|item| 1 + nodes(item)).sum(),
        Value::Object(map) => map.values().map(|value| 1 + nodes(value)).sum(),
        _ => 0,
    }
}

/// The value at `path`'s parent, mutably.
fn parent_mut<'v>(root: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let (_, parents) = path.split_last()?;
    parents.iter().try_fold(root, |node, seg| match seg {
        Seg::Key(key) => node.get_mut(key.as_str()),
        Seg::Index(i) => node.get_mut(*i),
    })
}

fn set(root: &mut Value, path: &[Seg], value: Value) -> bool {
    match (parent_mut(root, path), path.last()) {
        (Some(Value::Object(map)), Some(Seg::Key(key))) => {
            map.insert(key.clone(), value);
            true
        }
        (Some(Value::Array(items)), Some(Seg::Index(i))) if *i < items.len() => {
            items[*i] = value;
            true
        }
        _ => false,
    }
}

fn remove(root: &mut Value, path: &[Seg]) -> bool {
    match (parent_mut(root, path), path.last()) {
        (Some(Value::Object(map)), Some(Seg::Key(key))) => map.remove(key).is_some(),
        _ => false,
    }
}

fn last_key(path: &[Seg]) -> Option<&str> {
    path.iter().rev().find_map(|seg| match seg {
        Seg::Key(key) => Some(key.as_str()),
        Seg::Index(_) => None,
    })
}

/// A step into the payload while decoding, borrowed from it.
#[derive(Clone, Copy)]
enum Step<'de> {
    Key(&'de str),
    Index,
}

/// Shared by every level of one decoding pass.
struct Ctx<'de, 'b> {
    budget: &'b Cell<usize>,
    /// Where decoding is now (list indices collapsed: every item of a list
    /// is the same type).
    stack: RefCell<Vec<Step<'de>>>,
    /// The field names each struct's `Deserialize` declared, by path.
    names: RefCell<HashMap<Vec<Option<&'de str>>, &'static [&'static str]>>,
}

impl<'de> Ctx<'de, '_> {
    fn spend(&self) -> Result<(), CastError> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(CastError::new(Kind::Exhausted)),
        }
    }

    fn declare(&self, fields: &'static [&'static str]) {
        let path: Vec<Option<&'de str>> = self
            .stack
            .borrow()
            .iter()
            .map(|step| match step {
                Step::Key(key) => Some(*key),
                Step::Index => None,
            })
            .collect();
        self.names.borrow_mut().entry(path).or_insert(fields);
    }

    fn enter<R>(&self, step: Step<'de>, f: impl FnOnce() -> R) -> R {
        self.stack.borrow_mut().push(step);
        let result = f();
        self.stack.borrow_mut().pop();
        result
    }
}

/// A deserializer over a parsed payload whose errors say where they are.
struct ValueDe<'de, 'c, 'b> {
    value: &'de Value,
    ctx: &'c Ctx<'de, 'b>,
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (_, Some(i), _) => Unexpected::Signed(i),
            (_, _, Some(f)) => Unexpected::Float(f),
            _ => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'de, '_, '_> {
    type Error = CastError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CastError> {
        self.ctx.spend()?;
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (_, Some(i), _) => visitor.visit_i64(i),
                (_, _, Some(f)) => visitor.visit_f64(f),
                _ => Err(de::Error::invalid_type(unexpected(self.value), &visitor)),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(SeqAcc { items: items.iter().enumerate(), ctx: self.ctx }),
            Value::Object(map) => visitor.visit_map(MapAcc { entries: map.iter(), value: None, ctx: self.ctx }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CastError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CastError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, CastError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CastError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CastError> {
        self.ctx.declare(fields);
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CastError> {
        self.ctx.spend()?;
        let result = match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((key, value)) => visitor.visit_enum(EnumAcc { key, value, ctx: self.ctx }),
                None => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
            },
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        };
        // An enum takes none of the generic placeholders; its first
        // variant's name fits when that variant carries no data.
        result.map_err(|mut e| {
            if e.rev_path.is_empty() && e.variant.is_none() {
                e.variant = variants.first().copied();
            }
            e
        })
    }

    /// Fields the type ignores are not walked: a huge unknown field costs
    /// nothing per pass.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CastError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map identifier
    }
}

struct MapAcc<'de, 'c, 'b> {
    entries: serde_json::map::Iter<'de>,
    value: Option<(&'de str, &'de Value)>,
    ctx: &'c Ctx<'de, 'b>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'de, '_, '_> {
    type Error = CastError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, CastError> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        // Keys count too: an object of a million ignored keys is a million
        // steps per pass, even though their values are skipped.
        self.ctx.spend()?;
        self.value = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, CastError> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("value asked for before its key"));
        };
        self.ctx
            .enter(Step::Key(key), || seed.deserialize(ValueDe { value, ctx: self.ctx }))
            .map_err(|e| e.within(Seg::Key(key.to_owned())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqAcc<'de, 'c, 'b> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    ctx: &'c Ctx<'de, 'b>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'de, '_, '_> {
    type Error = CastError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, CastError> {
        let Some((i, value)) = self.items.next() else { return Ok(None) };
        self.ctx.spend()?;
        self.ctx
            .enter(Step::Index, || seed.deserialize(ValueDe { value, ctx: self.ctx }))
            .map(Some)
            .map_err(|e| e.within(Seg::Index(i)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An externally tagged enum: `{"Variant": value}`.
struct EnumAcc<'de, 'c, 'b> {
    key: &'de str,
    value: &'de Value,
    ctx: &'c Ctx<'de, 'b>,
}

impl<'de, 'c, 'b> de::EnumAccess<'de> for EnumAcc<'de, 'c, 'b> {
    type Error = CastError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), CastError> {
        let variant = seed.deserialize(BorrowedStrDeserializer::new(self.key))?;
        Ok((variant, self))
    }
}

impl<'de> EnumAcc<'de, '_, '_> {
    fn inside<R>(&self, f: impl FnOnce(ValueDe<'de, '_, '_>) -> Result<R, CastError>) -> Result<R, CastError> {
        self.ctx
            .enter(Step::Key(self.key), || f(ValueDe { value: self.value, ctx: self.ctx }))
            .map_err(|e| e.within(Seg::Key(self.key.to_owned())))
    }
}

impl<'de> de::VariantAccess<'de> for EnumAcc<'de, '_, '_> {
    type Error = CastError;

    fn unit_variant(self) -> Result<(), CastError> {
        self.inside(|de| de::Deserialize::deserialize(de))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, CastError> {
        self.inside(|de| seed.deserialize(de))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, CastError> {
        self.inside(|de| de::Deserializer::deserialize_seq(de, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CastError> {
        self.inside(|de| de::Deserializer::deserialize_struct(de, "", fields, visitor))
    }
}

// ---------------------------------------------------------------------------
// Rule errors: wire names and messages.

/// The field names each decoded struct declared to serde, by wire path
/// (list indices collapsed).
struct Names(HashMap<Vec<Option<String>>, &'static [&'static str]>);

impl From<HashMap<Vec<Option<&str>>, &'static [&'static str]>> for Names {
    fn from(names: HashMap<Vec<Option<&str>>, &'static [&'static str]>) -> Self {
        Names(
            names
                .into_iter()
                .map(|(path, fields)| (path.into_iter().map(|key| key.map(str::to_owned)).collect(), fields))
                .collect(),
        )
    }
}

impl Names {
    /// Turns a path of Rust field names into one of wire names, and tells
    /// whether every name was found among the declared ones.
    fn wire_path(&self, rust: &[Seg]) -> (Path, bool) {
        let mut wire = Vec::with_capacity(rust.len());
        let mut at: Vec<Option<String>> = Vec::with_capacity(rust.len());
        let mut matched = true;
        for seg in rust {
            match seg {
                Seg::Key(name) => {
                    let declared = self.0.get(&at).copied();
                    let name = wire_name(name, declared);
                    matched &= declared.is_none_or(|declared| declared.contains(&name.as_str()));
                    at.push(Some(name.clone()));
                    wire.push(Seg::Key(name));
                }
                Seg::Index(i) => {
                    at.push(None);
                    wire.push(Seg::Index(*i));
                }
            }
        }
        (wire, matched)
    }
}

/// The wire name of Rust field `rust` among the names a struct declared:
/// the name itself, or the single one a serde case convention makes of it.
fn wire_name(rust: &str, declared: Option<&[&str]>) -> String {
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    let Some(declared) = declared else { return rust.to_owned() };
    if declared.contains(&rust) {
        return rust.to_owned();
    }
    let pascal: String = rust
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let camel = match pascal.chars().next() {
        Some(first) => first.to_ascii_lowercase().to_string() + &pascal[first.len_utf8()..],
        None => String::new(),
    };
    let upper = rust.to_ascii_uppercase();
    let kebab = rust.replace('_', "-");
    let upper_kebab = upper.replace('_', "-");
    let mut found: Vec<String> =
        [camel, pascal, upper, kebab, upper_kebab].into_iter().filter(|c| declared.contains(&c.as_str())).collect();
    found.dedup();
    match found.as_slice() {
        [one] => one.clone(),
        _ => rust.to_owned(),
    }
}

fn flatten_rules<'e>(errors: &'e ValidationErrors, path: &mut Path, out: &mut Vec<(Path, &'e ValidationError)>) {
    // Sorted, so the messages of one field keep a stable order.
    let mut fields: Vec<_> = errors.errors().iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (field, kind) in fields {
        path.push(Seg::Key(field.to_string()));
        match kind {
            ValidationErrorsKind::Field(list) => out.extend(list.iter().map(|e| (path.clone(), e))),
            ValidationErrorsKind::Struct(nested) => flatten_rules(nested, path, out),
            ValidationErrorsKind::List(items) => {
                for (i, nested) in items {
                    path.push(Seg::Index(*i));
                    flatten_rules(nested, path, out);
                    path.pop();
                }
            }
        }
        path.pop();
    }
}

/// The rule's own message (its `%{param}`s filled in), or Ecto's default
/// for the rule.
fn rule_message<M: Messages>(field: &str, error: &ValidationError) -> String {
    let param = |name: &str| error.params.get(name).filter(|v| !v.is_null());
    if let Some(message) = &error.message {
        return interpolate(message, &error.params);
    }
    let number = |v: &Value| v.as_f64();
    match error.code.as_ref() {
        "length" => {
            let (len, unit) = match param("value") {
                Some(Value::String(s)) => (s.chars().count(), "character(s)"),
                Some(Value::Array(items)) => (items.len(), "item(s)"),
                Some(Value::Object(map)) => (map.len(), "item(s)"),
                _ => (0, "character(s)"),
            };
            let count = |v: &Value| v.as_u64().map_or(usize::MAX, |n| n as usize);
            let verb = if unit == "item(s)" { "should have" } else { "should be" };
            if let Some(equal) = param("equal") {
                format!("{verb} {} {unit}", display(equal))
            } else if let Some(min) = param("min").filter(|min| len < count(min) || param("max").is_none()) {
                format!("{verb} at least {} {unit}", display(min))
            } else if let Some(max) = param("max") {
                format!("{verb} at most {} {unit}", display(max))
            } else {
                M::invalid(field)
            }
        }
        "range" => {
            let value = param("value").and_then(number);
            let below = |bound: &Value, strict: bool| match (value, number(bound)) {
                (Some(v), Some(b)) => v < b || (strict && v == b),
                _ => true,
            };
            let above = |bound: &Value, strict: bool| match (value, number(bound)) {
                (Some(v), Some(b)) => v > b || (strict && v == b),
                _ => true,
            };
            if let Some(min) = param("min").filter(|b| below(b, false)) {
                format!("must be greater than or equal to {}", display(min))
            } else if let Some(min) = param("exclusive_min").filter(|b| below(b, true)) {
                format!("must be greater than {}", display(min))
            } else if let Some(max) = param("max").filter(|b| above(b, false)) {
                format!("must be less than or equal to {}", display(max))
            } else if let Some(max) = param("exclusive_max").filter(|b| above(b, true)) {
                format!("must be less than {}", display(max))
            } else {
                M::invalid(field)
            }
        }
        "required" | "blank" => M::blank(field),
        "email"
        | "url"
        | "regex"
        | "contains"
        | "does_not_contain"
        | "non_control_character"
        | "credit_card"
        | "ip" => "has invalid format".to_owned(),
        "must_match" => "does not match confirmation".to_owned(),
        _ => M::invalid(field),
    }
}

/// A parameter as a person reads it: strings without quotes.
fn display(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Fills `%{name}` from the rule's parameters, as Ecto's
/// `traverse_errors` does with its options.
fn interpolate(template: &str, params: &HashMap<Cow<'static, str>, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("%{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match params.get(name) {
                    Some(value) => out.push_str(&display(value)),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
