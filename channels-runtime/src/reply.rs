//! What a `handle_in` answers: [`Reply`] and the types that convert into it.

use std::marker::PhantomData;

use serde::Serialize;

use crate::crash::{BoxError, Crash};
use crate::describe::{Never, ReplyTypes, Untyped};
use crate::protocol::{IntoPayload, Payload, PayloadError};

/// The answer of a `handle_in` handler: Phoenix's `{:reply, ..}`,
/// `{:noreply, ..}` and `{:stop, ..}`.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::reply::Reply;
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct Saved { id: u64 }
///
/// let ok = Reply::ok(json!({"id": 7}));
/// let typed = Reply::ok(&Saved { id: 7 });
/// let binary = Reply::ok(vec![0u8, 1, 2]);
/// let err = Reply::error(json!({"errors": {"content": ["can't be blank"]}}));
/// let silent = Reply::none();
/// let bye = Reply::ok(json!({})).and_stop();
/// # let _ = (ok, typed, binary, err, silent, bye);
/// ```
#[must_use = "a Reply does nothing unless returned from a handler"]
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) status: Option<(Status, Payload)>,
    pub(crate) stop: bool,
}

/// The status of a reply: what a handler answers with, and what the test
/// helpers ([`TestChannel::reply`](crate::testing::TestChannel::reply),
/// [`TestChannel::assert_reply`](crate::testing::TestChannel::assert_reply))
/// read back. It compares equal to its wire form, so code written against
/// the string still reads right:
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::reply::Status;
///
/// let status: Status = "error".parse().unwrap();
/// assert_eq!(status, Status::Error);
/// assert_eq!(status, "error");
/// assert!("ok" == Status::Ok && Status::Ok != "error");
/// assert_eq!(Status::Ok.to_string(), "ok");
/// assert!("created".parse::<Status>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `"ok"`: phoenix.js calls the push's `receive("ok", ..)` hook.
    Ok,
    /// `"error"`: phoenix.js calls the push's `receive("error", ..)` hook.
    Error,
}

impl Status {
    /// The status as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status other than `ok` and `error` (see [`Status`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a reply status (`ok` or `error`)")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(status: &str) -> Result<Self, Self::Err> {
        match status {
            "ok" => Ok(Status::Ok),
            "error" => Ok(Status::Error),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// `status == "ok"`, and the other way round, for every string type.
macro_rules! status_eq_str {
    ($($str:ty),*) => {$(
        impl PartialEq<$str> for Status {
            fn eq(&self, other: &$str) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }

        impl PartialEq<Status> for $str {
            fn eq(&self, other: &Status) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

status_eq_str!(str, &str, String);

impl Reply {
    /// Reply `ok` with `response`, JSON or binary (see [`IntoPayload`]; use
    /// `json!({})` for a bare ok).
    pub fn ok(response: impl IntoPayload) -> Self {
        Self::with_status(Status::Ok, response)
    }

    /// Reply `error` with `response`.
    pub fn error(response: impl IntoPayload) -> Self {
        Self::with_status(Status::Error, response)
    }

    /// Reply with a status chosen at run time.
    pub fn with_status(status: Status, response: impl IntoPayload) -> Self {
        match response.into_payload() {
            Ok(payload) => Reply { status: Some((status, payload)), stop: false },
            Err(error) => {
                tracing::error!(%error, "reply could not be encoded as JSON");
                Reply { status: Some((Status::Error, reason("reply could not be encoded"))), stop: false }
            }
        }
    }

    /// Send no reply (phoenix.js times the push out after its timeout).
    pub fn none() -> Self {
        Reply { status: None, stop: false }
    }

    /// Stop the channel after this reply: the client gets `phx_close` and
    /// does not rejoin. The socket and its other channels are unaffected.
    pub fn and_stop(mut self) -> Self {
        self.stop = true;
        self
    }

    /// Stop the channel without replying.
    pub fn stop() -> Self {
        Reply::none().and_stop()
    }

    /// The reply to a payload that does not fit the handler's type.
    pub fn invalid_payload(error: &PayloadError) -> Self {
        #[derive(Serialize)]
        struct Invalid<'a> {
            reason: &'static str,
            path: &'a str,
            message: &'a str,
        }
        Reply::error(&Invalid { reason: "invalid payload", path: error.path(), message: error.message() })
    }

    /// The reply to an event no handler is declared for.
    pub fn unknown_event() -> Self {
        Reply::error(reason("unknown event"))
    }

    /// The status and response, if this reply sends one.
    pub fn response(&self) -> Option<(Status, &Payload)> {
        self.status.as_ref().map(|(s, p)| (*s, p))
    }

    /// Whether the channel stops after this reply.
    pub fn stops(&self) -> bool {
        self.stop
    }
}

/// A [`Reply`] whose responses have types: `T` for `ok`, `E` for `error`
/// (by default [`Never`]: a handler that never replies `error` itself).
/// It sends what a `Reply` of the same response sends; the difference is
/// that the generated TypeScript ([`typescript`](crate::typescript)) types
/// the push's reply as `T` (and its error as `E`) instead of `unknown`.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::reply::{IntoReply, TypedReply};
///
/// #[derive(serde::Serialize)]
/// struct Saved { id: u64 }
///
/// // In a handler: `-> Result<TypedReply<Saved>, BroadcastError>`.
/// let reply: TypedReply<Saved> = TypedReply::ok(Saved { id: 7 });
/// let reply = reply.into_reply().unwrap();
/// assert_eq!(reply.response().unwrap().1.as_json(), Some(r#"{"id":7}"#));
/// ```
#[must_use = "a TypedReply does nothing unless returned from a handler"]
pub struct TypedReply<T, E = Never> {
    reply: Reply,
    types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> TypedReply<T, E>
where
    for<'a> &'a T: IntoPayload,
{
    /// Reply `ok` with `response`: a `Serialize` value (a model sends its
    /// `Encode` shape), or a [`Payload`] as it is.
    pub fn ok(response: T) -> Self {
        TypedReply { reply: Reply::ok(&response), types: PhantomData }
    }
}

impl<T, E> TypedReply<T, E>
where
    for<'a> &'a E: IntoPayload,
{
    /// Reply `error` with `response`.
    pub fn error(response: E) -> Self {
        TypedReply { reply: Reply::error(&response), types: PhantomData }
    }
}

impl<T, E> TypedReply<T, E> {
    /// Stop the channel after this reply ([`Reply::and_stop`]).
    pub fn and_stop(self) -> Self {
        TypedReply { reply: self.reply.and_stop(), types: PhantomData }
    }

    /// The untyped reply it sends.
    pub fn into_untyped(self) -> Reply {
        self.reply
    }
}

impl<T, E> std::fmt::Debug for TypedReply<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedReply").field(&self.reply).finish()
    }
}

/// `{"reason": reason}`, the shape of every error Phoenix itself sends.
pub(crate) fn reason(reason: &str) -> Payload {
    #[derive(Serialize)]
    struct Reason<'a> {
        reason: &'a str,
    }
    // A struct of one string field always serializes.
    Payload::json(&Reason { reason }).expect("a reason always serializes")
}

/// The outcome of a handler: what a `#[handle_in]` method may return.
///
/// - [`Reply`]: as given.
/// - [`TypedReply`]: as given, with its response types for the generated
///   TypeScript.
/// - `()`: no reply.
/// - `Result<R, E>` with `R: IntoReply` and any error `E` that converts
///   into a [`BoxError`] (every `std::error::Error + Send + Sync + 'static`,
///   `anyhow::Error`, `String`): `Ok` as `R`; `Err` crashes the channel like
///   an exception in Phoenix (logged with the error and its sources, the
///   client gets `phx_error` and rejoins).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a reply",
    label = "handlers return a `Reply`, `()` or a `Result<Reply, E>`",
    note = "return `Reply::ok(..)`, `Reply::error(..)` or `Reply::none()`"
)]
pub trait IntoReply {
    /// Converts into a reply, or the crash it stands for.
    fn into_reply(self) -> Result<Reply, Crash>;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Result<Reply, Crash> {
        Ok(self)
    }
}

impl<T, E> IntoReply for TypedReply<T, E> {
    fn into_reply(self) -> Result<Reply, Crash> {
        Ok(self.reply)
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Result<Reply, Crash> {
        Ok(Reply::none())
    }
}

impl<R: IntoReply, E: Into<BoxError>> IntoReply for Result<R, E> {
    fn into_reply(self) -> Result<Reply, Crash> {
        match self {
            Ok(reply) => reply.into_reply(),
            Err(error) => Err(Crash::from(error)),
        }
    }
}

impl ReplyTypes for Reply {
    type Ok = Untyped;
    type Error = Untyped;
}

impl<T, E> ReplyTypes for TypedReply<T, E> {
    type Ok = T;
    type Error = E;
}

impl ReplyTypes for () {
    type Ok = Never;
    type Error = Never;
}

/// `Err` crashes the channel: no reply of its own.
impl<R: ReplyTypes, E> ReplyTypes for Result<R, E> {
    type Ok = R::Ok;
    type Error = R::Error;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constructors() {
        let r = Reply::ok(json!({"a": 1}));
        assert_eq!(r.response().map(|(s, p)| (s, p.as_json())), Some((Status::Ok, Some(r#"{"a":1}"#))));
        assert!(!r.stops());
        assert!(Reply::none().response().is_none());
        assert!(Reply::stop().stops());
        assert_eq!(Reply::unknown_event().response().unwrap().1.as_json(), Some(r#"{"reason":"unknown event"}"#));
    }

    #[test]
    fn unencodable_responses_become_errors() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        let r = Reply::ok(&bad);
        assert_eq!(r.response().unwrap().0, Status::Error);
    }

    #[test]
    fn into_reply() {
        assert!(().into_reply().unwrap().response().is_none());
        let ok: Result<Reply, String> = Ok(Reply::ok(json!({})));
        assert!(ok.into_reply().is_ok());
        let err: Result<Reply, &str> = Err("db down");
        assert_eq!(err.into_reply().unwrap_err().to_string(), "db down");
        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let crash = io.into_reply().unwrap_err();
        assert!(crash.error().unwrap().downcast_ref::<std::io::Error>().is_some(), "not flattened to a string");
    }

    #[test]
    fn typed_replies_send_what_untyped_ones_do() {
        #[derive(Serialize)]
        struct Saved {
            id: u64,
        }
        #[derive(Serialize)]
        struct Refused {
            reason: &'static str,
        }
        let ok: TypedReply<Saved, Refused> = TypedReply::ok(Saved { id: 7 });
        let ok = ok.into_reply().unwrap();
        assert_eq!(ok.response().map(|(s, p)| (s, p.as_json())), Some((Status::Ok, Some(r#"{"id":7}"#))));
        let err: TypedReply<Saved, Refused> = TypedReply::error(Refused { reason: "full" }).and_stop();
        let err = err.into_untyped();
        assert_eq!(err.response().map(|(s, p)| (s, p.as_json())), Some((Status::Error, Some(r#"{"reason":"full"}"#))));
        assert!(err.stops());
    }
}
