//! Accepting a connection: [`Connect`], its [`Params`], [`ConnectInfo`] and
//! [`Refuse`].
//!
//! Phoenix's `connect/3` and `id/1` become the two functions of the
//! [`Connect`] trait, implemented on the socket type that `socket!` declares:
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use std::collections::HashSet;
//! use phx_channels::connect::{Connect, ConnectInfo, Params, Refuse};
//!
//! struct UserSocket;
//!
//! /// The application's state: given once to the endpoint, shared by every
//! /// connection (a database pool, a cache, a config).
//! struct App { banned: HashSet<String> }
//!
//! #[derive(Clone)]
//! struct User { id: String }
//!
//! impl Connect for UserSocket {
//!     type State = App;
//!     type Assigns = User;
//!
//!     async fn connect(params: &Params, _info: &ConnectInfo, app: &App) -> Result<User, Refuse> {
//!         let id = params.get("user_id").unwrap_or("anonymous");
//!         if params.get("token") == Some("invalid") || app.banned.contains(id) {
//!             return Err(Refuse::forbidden());
//!         }
//!         Ok(User { id: id.to_owned() })
//!     }
//!
//!     fn id(user: &User, _app: &App) -> Option<String> {
//!         Some(format!("users_socket:{}", user.id))
//!     }
//! }
//! ```

use std::future::Future;
use std::net::SocketAddr;

/// The HTTP status a [`Refuse`] answers with: the `http` crate's, re-exported
/// so an application needs no dependency for [`Refuse::with_status`].
pub use axum::http::StatusCode;
use axum::http::{HeaderMap, Uri};
use serde::de::DeserializeOwned;

use crate::trace::TraceParent;

/// How a socket accepts connections: Phoenix's `connect/3` and `id/1`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Connect`",
    label = "sockets must say how they accept connections",
    note = "add `impl Connect for {Self} {{ type State = ..; type Assigns = ..; async fn connect(params: &Params, info: &ConnectInfo, state: &Self::State) -> Result<Self::Assigns, Refuse> {{ .. }} }}`"
)]
pub trait Connect: Send + Sync + Sized + 'static {
    /// The application's state (a database pool, a cache, a config): given
    /// once to the [`Endpoint`](crate::endpoint::Endpoint::with_state),
    /// shared by every connection behind one `Arc`, and reachable from
    /// `connect`, `id`, and every channel callback through
    /// [`Socket::state`](crate::socket::Socket::state). `()` for none.
    type State: Send + Sync + 'static;

    /// What a connection carries for its whole life (the user, say): set by
    /// [`Connect::connect`], copied into every channel it joins.
    type Assigns: Clone + Send + Sync + 'static;

    /// Accepts or refuses a connection. `params` are the query parameters
    /// (including `vsn`); a refusal answers the upgrade with HTTP 403 (or the
    /// status the [`Refuse`] carries).
    fn connect(
        params: &Params,
        info: &ConnectInfo,
        state: &Self::State,
    ) -> impl Future<Output = Result<Self::Assigns, Refuse>> + Send;

    /// The socket's id, e.g. `users_socket:42`, or `None` for anonymous
    /// sockets. Broadcasting `disconnect` on the id closes every connection
    /// that has it.
    fn id(assigns: &Self::Assigns, state: &Self::State) -> Option<String> {
        let _ = (assigns, state);
        None
    }
}

/// A connection refused by [`Connect::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    status: StatusCode,
    reason: Option<String>,
}

impl Refuse {
    /// Refuse with HTTP 403, as Phoenix does for `:error`.
    pub fn forbidden() -> Self {
        Refuse { status: StatusCode::FORBIDDEN, reason: None }
    }

    /// Refuse with another HTTP status (e.g. 401 or 429), as Phoenix's
    /// `:error_handler` allows.
    ///
    /// ```
    /// # use phx_channels_runtime as phx_channels;
    /// use phx_channels::connect::{Refuse, StatusCode};
    ///
    /// let refusal = Refuse::with_status(StatusCode::UNAUTHORIZED).reason("expired token");
    /// assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);
    /// ```
    pub fn with_status(status: StatusCode) -> Self {
        Refuse { status, reason: None }
    }

    /// Attaches a reason, logged by the server (never sent to the client).
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The HTTP status the upgrade is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The logged reason, if any.
    pub fn log_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl Default for Refuse {
    fn default() -> Self {
        Refuse::forbidden()
    }
}

/// The query parameters of a connection.
///
/// Every parameter is kept, `vsn` included. When a key appears more than
/// once the last value wins, as in Plug (phoenix.js's LongPoll appends its
/// own `token` after the app's).
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::connect::Params;
///
/// let params = Params::from_query("token=a&user_id=7&token=b&vsn=2.0.0");
/// assert_eq!(params.get("token"), Some("b"));
/// assert_eq!(params.get("user_id"), Some("7"));
///
/// // Typed fields: numbers, booleans and optional fields decode too.
/// #[derive(serde::Deserialize)]
/// struct Auth { user_id: u64, admin: Option<bool> }
/// let auth: Auth = params.decode().unwrap();
/// assert_eq!((auth.user_id, auth.admin), (7, None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a URL query string (without the `?`).
    pub fn from_query(query: &str) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        // Where each key stands, so a query of many keys (unauthenticated
        // input) is parsed in linear time.
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let (key, value) = (key.into_owned(), value.into_owned());
            match index.get(&key) {
                Some(&at) => pairs[at].1 = value,
                None => {
                    index.insert(key.clone(), pairs.len());
                    pairs.push((key, value));
                }
            }
        }
        Params { pairs }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every parameter, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Deserializes the parameters into `T`, as a form is: numbers,
    /// booleans, `Option`s and strings decode from their text (through
    /// `serde_urlencoded`), the last value of a repeated key wins, and a
    /// missing or unparsable field names itself in the error.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ParamsError> {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.pairs).finish();
        serde_urlencoded::from_str(&encoded).map_err(ParamsError)
    }
}

/// Connect parameters that do not fit the type [`Params::decode`] asked for.
#[derive(Debug, thiserror::Error)]
#[error("invalid connect params: {0}")]
pub struct ParamsError(#[source] serde_urlencoded::de::Error);

/// What `connect` may know about the request besides its parameters.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    peer_addr: Option<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    auth_token: Option<String>,
    traceparent: Option<TraceParent>,
}

/// The header first, then the parameter; a malformed one is ignored.
fn traceparent_from(uri: &Uri, headers: &HeaderMap) -> Option<TraceParent> {
    if let Some(header) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        return TraceParent::parse(header);
    }
    // Most connects carry none: the query is parsed again only if it may.
    let query = uri.query().filter(|q| q.contains("traceparent"))?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "traceparent").and_then(|(_, v)| TraceParent::parse(&v))
}

/// The sub-protocol prefix phoenix.js ≥ 1.8 uses to carry its `authToken`.
const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

impl ConnectInfo {
    /// Connection information for a request. The `authToken` phoenix.js
    /// sends in `Sec-WebSocket-Protocol` is decoded from `headers`.
    pub fn new(peer_addr: Option<SocketAddr>, uri: Uri, headers: HeaderMap) -> Self {
        let auth_token = auth_token_from(&headers);
        let traceparent = traceparent_from(&uri, &headers);
        ConnectInfo { peer_addr, uri, headers, auth_token, traceparent }
    }

    /// The client's W3C trace context: the `traceparent` header, or the
    /// `traceparent` connect parameter (a browser's WebSocket cannot send
    /// headers). `None` when absent or malformed. See [`crate::trace`].
    pub fn traceparent(&self) -> Option<&TraceParent> {
        self.traceparent.as_ref()
    }

    /// The token phoenix.js ≥ 1.8 sends with its `authToken` option (in the
    /// WebSocket sub-protocol list, or LongPoll's `X-Phoenix-AuthToken`),
    /// so it never appears in URLs and logs.
    pub fn auth_token(&self) -> Option<&str> {
        self.auth_token.as_deref()
    }

    /// A cookie sent with the handshake, e.g. a session cookie. Check the
    /// origin (on by default) whenever you authenticate by cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The client's address, when the server was started with connect info
    /// (as [`Endpoint::serve`](crate::endpoint::Endpoint::serve) does).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The request URI, query included.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Finds `base64url.bearer.phx.<B64>` among the offered sub-protocols (or
/// the raw `X-Phoenix-AuthToken` header) and decodes it. phoenix.js encodes
/// with the standard alphabet and strips the padding, despite the name;
/// both alphabets are accepted.
fn auth_token_from(headers: &HeaderMap) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    if let Some(raw) = headers.get("x-phoenix-authtoken").and_then(|v| v.to_str().ok()) {
        return Some(raw.to_owned());
    }
    let encoded = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(AUTH_TOKEN_PREFIX))?;
    let encoded = encoded.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD.decode(encoded).or_else(|_| URL_SAFE_NO_PAD.decode(encoded)).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(headers: &[(&str, &str)]) -> ConnectInfo {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        ConnectInfo::new(None, Uri::from_static("/socket/websocket"), map)
    }

    #[test]
    fn auth_token_from_the_sub_protocol_list() {
        // btoa("user:7/secret+?") with padding removed, as phoenix.js sends it
        let i = info(&[("sec-websocket-protocol", "phoenix, base64url.bearer.phx.dXNlcjo3L3NlY3JldCs/")]);
        assert_eq!(i.auth_token(), Some("user:7/secret+?"));
        let i = info(&[("sec-websocket-protocol", "phoenix, base64url.bearer.phx.dXNlcjo3L3NlY3JldCs_")]);
        assert_eq!(i.auth_token(), Some("user:7/secret+?"), "URL-safe alphabet too");
        assert_eq!(info(&[("sec-websocket-protocol", "phoenix")]).auth_token(), None);
        assert_eq!(info(&[("x-phoenix-authtoken", "raw-token")]).auth_token(), Some("raw-token"));
        assert_eq!(info(&[("sec-websocket-protocol", "base64url.bearer.phx.!!!")]).auth_token(), None);
    }

    #[test]
    fn cookies() {
        let i = info(&[("cookie", "a=1; session=abc=; b=2"), ("cookie", "c=3")]);
        assert_eq!(i.cookie("session"), Some("abc="));
        assert_eq!(i.cookie("c"), Some("3"));
        assert_eq!(i.cookie("missing"), None);
    }

    #[test]
    fn query_decoding() {
        let p = Params::from_query("a=1&b=x+y&c=%E2%9C%93&flag&=empty&d=%zz");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(p.get("c"), Some("✓"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get(""), Some("empty"));
        assert_eq!(p.get("d"), Some("%zz"));
        assert_eq!(p.get("missing"), None);
        assert!(Params::from_query("").is_empty());
    }

    #[test]
    fn last_duplicate_wins_and_order_is_kept() {
        let p = Params::from_query("token=app&vsn=2.0.0&token=session");
        assert_eq!(p.get("token"), Some("session"));
        assert_eq!(p.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["token", "vsn"]);
    }

    #[test]
    fn decode_into_a_struct() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Q {
            user_id: String,
            #[serde(default)]
            token: Option<String>,
        }
        let p = Params::from_query("user_id=7&vsn=2.0.0");
        assert_eq!(p.decode::<Q>().unwrap(), Q { user_id: "7".into(), token: None });
        assert!(Params::from_query("vsn=2.0.0").decode::<Q>().is_err());
    }

    #[test]
    fn decode_typed_fields() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Q {
            user_id: u64,
            admin: bool,
            ratio: f64,
            page: Option<u32>,
            name: Option<String>,
        }
        let p = Params::from_query("user_id=7&admin=true&ratio=0.5&name=a+b&user_id=8");
        assert_eq!(
            p.decode::<Q>().unwrap(),
            Q { user_id: 8, admin: true, ratio: 0.5, page: None, name: Some("a b".into()) }
        );
        let err = Params::from_query("user_id=x&admin=true&ratio=1").decode::<Q>().unwrap_err();
        assert!(err.to_string().contains("invalid digit"), "{err}");
        let err = Params::from_query("admin=true&ratio=1").decode::<Q>().unwrap_err();
        assert!(err.to_string().contains("user_id"), "{err}");
        // Keys and values that need escaping survive the round trip.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Odd {
            #[serde(rename = "a&b")]
            ab: String,
        }
        let odd = Params::from_query("a%26b=%3D%26%2B%25");
        assert_eq!(odd.decode::<Odd>().unwrap(), Odd { ab: "=&+%".into() });
    }

    #[test]
    fn refusals() {
        assert_eq!(Refuse::default().status(), StatusCode::FORBIDDEN);
        let r = Refuse::with_status(StatusCode::UNAUTHORIZED).reason("expired token");
        assert_eq!((r.status(), r.log_reason()), (StatusCode::UNAUTHORIZED, Some("expired token")));
    }
}
