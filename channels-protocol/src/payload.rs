//! Payloads: the JSON or bytes a message carries, what can be sent as one
//! ([`IntoPayload`]), and how a payload is read into a handler's type.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::value::RawValue;

/// A message payload: JSON, or raw bytes (V2 binary frames).
///
/// JSON is kept as the exact text that arrived or was encoded, so a payload
/// is parsed at most once (straight into the handler's type) and encoded at
/// most once (however many subscribers receive it).
#[derive(Clone)]
pub enum Payload {
    /// A JSON value, kept as text.
    Json(Box<RawValue>),
    /// Raw bytes, carried in V2 binary frames.
    Binary(Bytes),
}

impl Payload {
    /// Encodes any serializable value as a JSON payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Payload::Json)
    }

    /// The empty object `{}`, the payload of bare replies and control frames.
    pub fn empty() -> Self {
        // `{}` is valid JSON, so this cannot fail.
        Payload::Json(RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON"))
    }

    /// The JSON text, if this is a JSON payload.
    pub fn as_json(&self) -> Option<&str> {
        match self {
            Payload::Json(raw) => Some(raw.get()),
            Payload::Binary(_) => None,
        }
    }

    /// The bytes, if this is a binary payload (a V2 binary frame).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use phx_channels_protocol::Payload;
    ///
    /// let payload = Payload::from(vec![1, 2, 3]);
    /// assert_eq!(payload.as_binary(), Some(&Bytes::from_static(&[1, 2, 3])));
    /// assert_eq!(Payload::empty().as_binary(), None);
    /// ```
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Payload::Json(_) => None,
            Payload::Binary(bytes) => Some(bytes),
        }
    }

    /// Deserializes the payload into `T`, naming the offending field on failure.
    ///
    /// ```
    /// use phx_channels_protocol::Payload;
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct NewComment { content: String }
    ///
    /// let bad = Payload::json(&serde_json::json!({"content": 5})).unwrap();
    /// let err = bad.decode::<NewComment>().unwrap_err();
    /// assert_eq!(err.path(), "content");
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self {
            Payload::Json(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                serde_path_to_error::deserialize(ObjectsOnly(&mut de)).map_err(|e| PayloadError {
                    path: e.path().to_string(),
                    message: strip_position(&e.inner().to_string()),
                })
            }
            Payload::Binary(bytes) => {
                // Let a handler that takes bytes (`Bytes`, `Vec<u8>`) receive them.
                let de = de::value::BytesDeserializer::<PayloadError>::new(bytes);
                T::deserialize(de).map_err(|e| PayloadError {
                    path: ".".to_owned(),
                    message: format!("binary payload: {}", e.message),
                })
            }
        }
    }
}

/// A payload deserializer on which the payload itself, when it is read as a
/// struct, must be a JSON object.
///
/// serde accepts a JSON array for a struct (its fields in order), so
/// `["hello"]` would pass for `{"content": "hello"}`. No Phoenix client
/// sends a payload as an array where an object is meant; accepting it would
/// only let malformed input through. Structs nested inside the payload
/// follow serde_json's usual rules (an array of their fields is accepted
/// there, as anywhere serde_json is used).
struct ObjectsOnly<D>(D);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, NoSeq(visitor))
    }

    forward! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(), deserialize_u32(),
        deserialize_u64(), deserialize_u128(), deserialize_f32(), deserialize_f64(), deserialize_char(),
        deserialize_str(), deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_option(), deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str), deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize), deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]), deserialize_identifier(),
        deserialize_ignored_any(),
    }
}

/// A struct visitor that refuses sequences.
struct NoSeq<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for NoSeq<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &"a JSON object"))
    }
}

/// serde_json appends "at line 1 column 14" to its messages; the field path
/// says where the problem is far better on a one-line frame.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(raw) => write!(f, "Json({})", raw.get()),
            Payload::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Binary(a), Payload::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Payload {}

impl Default for Payload {
    fn default() -> Self {
        Payload::empty()
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        // Serializing a `Value` only fails for maps with non-string keys,
        // which `Value` cannot hold.
        Payload::json(&value).expect("a serde_json::Value always serializes")
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::Binary(bytes)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Binary(Bytes::from(bytes))
    }
}

/// What can be sent as a payload: JSON or binary, through one signature.
///
/// Every method that sends something (`push`, `broadcast`,
/// `broadcast_from`, `local_broadcast`, replies, `Endpoint::broadcast`,
/// `PubSub::broadcast*`) takes `impl IntoPayload`:
///
/// - `&T` for any `T: Serialize` (a struct, `&json!(..)`, a `&str`): JSON;
/// - a [`serde_json::Value`] by value (`json!(..)`): JSON;
/// - a [`Payload`] (or `&Payload`), e.g. the one a handler received: sent as
///   it is, JSON or binary, without re-encoding;
/// - [`Bytes`] or `Vec<u8>` by value: binary (V2 binary frames).
///
/// A byte vector *by reference* is a `Serialize` value like any other and
/// travels as a JSON array of numbers; pass it by value (or as `Bytes`) to
/// send bytes.
///
/// ```
/// use bytes::Bytes;
/// use phx_channels_protocol::{IntoPayload, Payload};
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct Comment { content: &'static str }
///
/// let from_struct = (&Comment { content: "hi" }).into_payload().unwrap();
/// assert_eq!(from_struct.as_json(), Some(r#"{"content":"hi"}"#));
/// assert_eq!(json!({"a": 1}).into_payload().unwrap().as_json(), Some(r#"{"a":1}"#));
/// assert_eq!(vec![1u8, 2].into_payload().unwrap(), Payload::Binary(Bytes::from_static(&[1, 2])));
/// assert_eq!((&vec![1u8, 2]).into_payload().unwrap().as_json(), Some("[1,2]"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as a payload",
    label = "expected `&impl Serialize`, `serde_json::Value`, `Payload`, `Bytes` or `Vec<u8>`",
    note = "to send it as JSON, pass a reference: `&value`"
)]
pub trait IntoPayload {
    /// The payload, or why the value cannot be encoded as JSON.
    fn into_payload(self) -> Result<Payload, serde_json::Error>;
}

impl<T: Serialize + ?Sized> IntoPayload for &T {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Payload::json(self)
    }
}

impl IntoPayload for serde_json::Value {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Payload::json(&self)
    }
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(self)
    }
}

impl IntoPayload for &Payload {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(self.clone())
    }
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(Payload::Binary(self))
    }
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Result<Payload, serde_json::Error> {
        Ok(Payload::Binary(Bytes::from(self)))
    }
}

/// A payload that does not fit the type a handler asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload at `{path}`: {message}")]
pub struct PayloadError {
    path: String,
    message: String,
}

impl PayloadError {
    /// Where in the payload the problem is, as a dotted path (`.` for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, in serde's words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl de::Error for PayloadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PayloadError { path: ".".to_owned(), message: msg.to_string() }
    }
}
