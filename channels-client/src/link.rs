//! One WebSocket connection to the server: the URL and handshake phoenix.js
//! makes, a writer task that never holds back the socket's own task, and
//! the reading half.

use std::time::Duration;

use base64::Engine;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{frame::CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Refusal, SocketError};
use phx_channels_protocol::{ClientFrame, Serializer};

/// The reading half of an open connection (boxed: over a stream that
/// inflates and compresses, when the client offers compression, or
/// straight over the socket).
pub(crate) type Reader = std::pin::Pin<Box<dyn Stream<Item = Result<WsMessage, tungstenite::Error>> + Send>>;

/// Sub-protocol prefix phoenix.js puts before the base64 auth token.
const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// How long a closing connection may take to send its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where and how to connect: phoenix.js's `endPointURL()` and protocols.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `<endpoint>/websocket?<params>&vsn=<vsn>`.
    pub url: String,
    /// `Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.<token>`.
    pub protocols: Option<String>,
    /// What a `wss://` server's certificate is checked against.
    #[cfg(feature = "tls")]
    pub tls: crate::tls::Tls,
    /// Offer permessage-deflate ([`crate::SocketBuilder::compress`]).
    pub compress: bool,
}

/// The WebSocket URL of an endpoint given as `http(s)://`, as a browser's
/// `WebSocket` makes it (phoenix.js passes its endpoint to it as given):
/// `http://` is `ws://`, `https://` is `wss://`, any case.
pub(crate) fn websocket_url(endpoint: &str) -> String {
    let scheme_end = endpoint.find("://").unwrap_or(0);
    let scheme = &endpoint[..scheme_end];
    let ws = if scheme.eq_ignore_ascii_case("http") {
        "ws"
    } else if scheme.eq_ignore_ascii_case("https") {
        "wss"
    } else {
        return endpoint.to_owned();
    };
    format!("{ws}{}", &endpoint[scheme_end..])
}

impl Target {
    pub fn new(endpoint: &str, params: &[(String, String)], token: Option<&str>, serializer: Serializer) -> Self {
        let vsn = match serializer {
            Serializer::V1 => "1.0.0",
            Serializer::V2 => "2.0.0",
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in params {
            query.append_pair(key, value);
        }
        query.append_pair("vsn", vsn);
        let base = format!("{}/websocket", websocket_url(endpoint).trim_end_matches('/'));
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}{}", query.finish());
        // phoenix.js: btoa(token) without its `=` padding.
        let protocols = token.map(|t| {
            format!("phoenix, {AUTH_TOKEN_PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(t))
        });
        Target {
            url,
            protocols,
            #[cfg(feature = "tls")]
            tls: crate::tls::Tls::default(),
            compress: false,
        }
    }
}

/// An open connection: frames to write go to its writer task.
pub(crate) struct Link {
    writer: mpsc::UnboundedSender<WsMessage>,
    abort: AbortHandle,
}

impl Link {
    /// Connects, giving up after `timeout`; no message over
    /// `max_message_size` bytes is read.
    pub async fn open(
        target: Target,
        timeout: Duration,
        max_message_size: usize,
    ) -> Result<(Link, Reader), SocketError> {
        let invalid = |e: &dyn std::fmt::Display| SocketError::InvalidRequest(e.to_string());
        let mut request = target.url.as_str().into_client_request().map_err(|e| invalid(&e))?;
        if let Some(protocols) = &target.protocols {
            let value = HeaderValue::from_str(protocols).map_err(|e| invalid(&e))?;
            request.headers_mut().insert("sec-websocket-protocol", value);
        }
        let config =
            WebSocketConfig::default().max_message_size(Some(max_message_size)).max_frame_size(Some(max_message_size));
        if target.compress {
            request.headers_mut().insert("sec-websocket-extensions", HeaderValue::from_static(crate::deflate::OFFER));
            let open = async {
                let stream = connect_compressed(&target, request.uri(), max_message_size).await?;
                tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.map_err(connect_error)
            };
            let (ws, _response) =
                tokio::time::timeout(timeout, open).await.map_err(|_| SocketError::Timeout(timeout))??;
            return Ok(Link::start(ws));
        }
        #[cfg(feature = "tls")]
        let connect = {
            let connector = tokio_tungstenite::Connector::Rustls(target.tls.config.clone());
            tokio_tungstenite::connect_async_tls_with_config(request, Some(config), false, Some(connector))
        };
        #[cfg(not(feature = "tls"))]
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
        let (ws, _response) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| SocketError::Timeout(timeout))?
            .map_err(connect_error)?;
        Ok(Link::start(ws))
    }

    /// The link of a connection whose handshake is done, and its reader.
    fn start<S>(ws: WebSocketStream<S>) -> (Link, Reader)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, reader) = ws.split();
        let (writer, queue) = mpsc::unbounded_channel();
        let abort = tokio::spawn(write(sink, queue)).abort_handle();
        (Link { writer, abort }, Box::pin(reader))
    }

    /// Queues a frame; false once the connection is gone.
    pub fn send(&self, frame: ClientFrame) -> bool {
        let message = match frame {
            ClientFrame::Text(text) => WsMessage::text(text),
            ClientFrame::Binary(bytes) => WsMessage::binary(bytes),
        };
        self.writer.send(message).is_ok()
    }

    /// Closes after the frames already queued (what `disconnect` does).
    pub fn close(self) {
        // Dropping the queue lets the writer finish it, then close.
        drop(self);
    }

    /// Queues a close frame with `code`, after the frames already queued:
    /// the client ends the connection for a reason of its own (1009, a
    /// message too big). The connection closes once the link is dropped.
    pub fn close_with(&self, code: u16, reason: &str) {
        let frame = CloseFrame { code: code.into(), reason: reason.into() };
        let _ = self.writer.send(WsMessage::Close(Some(frame)));
    }

    /// Drops the connection at once: it is presumed dead (heartbeat
    /// timeout), so there is nothing to flush it for.
    pub fn kill(self) {
        self.abort.abort();
    }
}

/// Why a handshake failed: refused (an HTTP answer other than 101),
/// unreachable, or a handshake gone wrong.
fn connect_error(error: tungstenite::Error) -> SocketError {
    use tungstenite::Error;
    match error {
        Error::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            SocketError::Refused(Refusal::new(response.status().as_u16(), body))
        }
        // tokio-rustls reports a refused certificate as an IO error that
        // wraps rustls's.
        #[cfg(feature = "tls")]
        Error::Io(error) if error.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            SocketError::Tls(error.to_string())
        }
        Error::Io(error) => SocketError::Unreachable(error.to_string()),
        Error::ConnectionClosed | Error::AlreadyClosed => {
            SocketError::Unreachable("the connection closed during the handshake".to_owned())
        }
        Error::Url(tungstenite::error::UrlError::TlsFeatureNotEnabled) => SocketError::InvalidRequest(
            "a `wss://` endpoint needs the client's `tls` feature (on by default)".to_owned(),
        ),
        Error::Url(error) => SocketError::InvalidRequest(error.to_string()),
        Error::HttpFormat(error) => SocketError::InvalidRequest(error.to_string()),
        Error::Protocol(error) => SocketError::Handshake(error.to_string()),
        // The certificate's error first: "invalid peer certificate:
        // UnknownIssuer", "... NotValidForName".
        Error::Tls(error) => SocketError::Tls(error.to_string()),
        other => SocketError::Handshake(other.to_string()),
    }
}

/// Why an open connection could not be read from.
pub(crate) fn read_error(error: &tungstenite::Error) -> SocketError {
    match error {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            SocketError::MessageTooLarge { size: *size, max: *max_size }
        }
        other => SocketError::Broken(other.to_string()),
    }
}

/// The socket of a client that offers compression, TLS included for
/// `wss://`, under the stream that inflates and compresses (which must sit
/// above TLS):
/// what tokio-tungstenite's `connect_async` does, made here.
async fn connect_compressed(
    target: &Target,
    uri: &tokio_tungstenite::tungstenite::http::Uri,
    max_message_size: usize,
) -> Result<crate::deflate::Compression<MaybeTlsStream<TcpStream>>, SocketError> {
    let invalid = |why: &str| SocketError::InvalidRequest(why.to_owned());
    let host = uri.host().ok_or_else(|| invalid("the URL has no host"))?;
    // An IPv6 address comes in brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let socket = TcpStream::connect((host, port)).await.map_err(|e| SocketError::Unreachable(e.to_string()))?;
    let stream = if secure {
        #[cfg(feature = "tls")]
        {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| SocketError::InvalidRequest(e.to_string()))?;
            let connector = tokio_rustls::TlsConnector::from(target.tls.config.clone());
            let tls = connector.connect(name, socket).await.map_err(|e| connect_error(tungstenite::Error::Io(e)))?;
            MaybeTlsStream::Rustls(tls)
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (target, socket);
            return Err(invalid("a `wss://` endpoint needs the client's `tls` feature (on by default)"));
        }
    } else {
        MaybeTlsStream::Plain(socket)
    };
    Ok(crate::deflate::Compression::new(stream, max_message_size))
}

/// Writes queued frames in order, then closes the connection once the
/// queue's sender is gone.
async fn write<S>(mut sink: S, mut queue: mpsc::UnboundedReceiver<WsMessage>)
where
    S: Sink<WsMessage> + Unpin,
{
    while let Some(message) = queue.recv().await {
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_protocols_are_phoenix_js_ones() {
        let params = [("token".to_owned(), "a b&c".to_owned())];
        let t = Target::new("ws://h:4000/socket/", &params, Some("user:7/secret+?"), Serializer::V2);
        assert_eq!(t.url, "ws://h:4000/socket/websocket?token=a+b%26c&vsn=2.0.0");
        // btoa("user:7/secret+?") is "dXNlcjo3L3NlY3JldCs/", no padding to strip here
        assert_eq!(t.protocols.as_deref(), Some("phoenix, base64url.bearer.phx.dXNlcjo3L3NlY3JldCs/"));
        let t = Target::new("ws://h/socket", &[], Some("ab"), Serializer::V1);
        assert_eq!(t.url, "ws://h/socket/websocket?vsn=1.0.0");
        assert_eq!(t.protocols.as_deref(), Some("phoenix, base64url.bearer.phx.YWI"));
        assert_eq!(Target::new("ws://h/socket", &[], None, Serializer::V2).protocols, None);
    }

    #[test]
    fn http_urls_are_websocket_ones_as_in_a_browser() {
        assert_eq!(
            Target::new("http://h:4000/socket", &[], None, Serializer::V2).url,
            "ws://h:4000/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(
            Target::new("HTTPS://h/socket/", &[], None, Serializer::V2).url,
            "wss://h/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(websocket_url("wss://h/socket"), "wss://h/socket");
        assert_eq!(websocket_url("ws://h/http://x"), "ws://h/http://x");
        assert_eq!(websocket_url("h/socket"), "h/socket");
    }
}
