//! Raw transports (`Endpoint::raw_socket`, Phoenix's
//! `Phoenix.Socket.Transport`) over real loopback sockets: messages in and
//! replies out, sends from other tasks, closes the handler asks for, a
//! handler that panics, refusals, the socket's limits and metrics, and
//! `terminate` at the end.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels_runtime::connect::{ConnectInfo, Params, Refuse};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::transport::raw::{Ended, Handled, RawConn, RawMessage, RawSocket};
use phx_channels_runtime::SocketOptions;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every `terminate` of a [`Shouter`], by the `name` it connected with.
static ENDED: Mutex<Vec<(String, Ended)>> = Mutex::new(Vec::new());

/// Answers each text in capitals; `ticks N` sends N texts from another
/// task; `close` closes with 4001; `bad-close` asks for 1005 (not allowed);
/// `panic` panics; binary comes back reversed.
struct Shouter {
    name: String,
}

impl RawSocket for Shouter {
    type State = ();

    async fn connect(params: &Params, _info: &ConnectInfo, _state: &()) -> Result<Self, Refuse> {
        match params.get("name") {
            Some("nobody") => Err(Refuse::forbidden()),
            name => Ok(Shouter { name: name.unwrap_or("anonymous").to_owned() }),
        }
    }

    fn handle_in(&mut self, message: RawMessage, conn: &RawConn) -> Handled {
        let RawMessage::Text(_) = &message else {
            let mut bytes = message.as_bytes().to_vec();
            bytes.reverse();
            return Handled::Reply(RawMessage::binary(bytes));
        };
        match message.as_text().unwrap_or_default() {
            "close" => Handled::Close(4001, "asked to".to_owned()),
            "bad-close" => Handled::Close(1005, "not a code to send".to_owned()),
            "panic" => panic!("a raw handler panics on purpose"),
            text if text.starts_with("ticks ") => {
                let n: u32 = text["ticks ".len()..].parse().unwrap_or(0);
                let conn = conn.clone();
                tokio::spawn(async move {
                    for i in 0..n {
                        if conn.send(&RawMessage::text(format!("tick {i}"))).is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                });
                Handled::Ok
            }
            text => Handled::Reply(RawMessage::text(text.to_uppercase())),
        }
    }

    fn terminate(&mut self, reason: Ended) {
        ENDED.lock().unwrap().push((self.name.clone(), reason));
    }
}

fn ended(name: &str) -> Vec<Ended> {
    ENDED.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, r)| *r).collect()
}

async fn serve(options: SocketOptions) -> (std::net::SocketAddr, Endpoint) {
    let endpoint = Endpoint::new().raw_socket_with("/shout", Shouter { name: String::new() }, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.clone().serve_on(listener));
    (addr, endpoint)
}

async fn connect(addr: std::net::SocketAddr, name: &str) -> Ws {
    let url = format!("ws://{addr}/shout/websocket?name={name}");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a message within 5 s").unwrap().unwrap()
}

async fn close_code(ws: &mut Ws) -> Option<u16> {
    match next(ws).await {
        Message::Close(frame) => frame.map(|f| u16::from(f.code)),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_are_answered_in_order_and_sent_from_other_tasks() {
    let (addr, endpoint) = serve(SocketOptions::default()).await;
    let mut ws = connect(addr, "order").await;
    for word in ["a", "bé", "c"] {
        ws.send(Message::text(word)).await.unwrap();
    }
    for word in ["A", "BÉ", "C"] {
        assert_eq!(next(&mut ws).await, Message::text(word));
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![3, 2, 1]));
    ws.send(Message::text("ticks 100")).await.unwrap();
    for i in 0..100 {
        assert_eq!(next(&mut ws).await, Message::text(format!("tick {i}")));
    }
    assert_eq!(endpoint.metrics().connections_open, 1);
    assert_eq!(endpoint.metrics().messages_in, 5);
    ws.close(None).await.unwrap();
    assert_eq!(close_code(&mut ws).await, None);
    support::eventually("the connection ends", || endpoint.metrics().connections_open == 0).await;
    assert_eq!(ended("order"), [Ended::Closed]);
}

#[tokio::test]
async fn the_handler_closes_with_its_code_and_an_unsendable_one_becomes_1011() {
    let (addr, _endpoint) = serve(SocketOptions::default()).await;
    let mut ws = connect(addr, "closer").await;
    ws.send(Message::text("first")).await.unwrap();
    ws.send(Message::text("close")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("FIRST"));
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let mut ws = connect(addr, "bad-closer").await;
    ws.send(Message::text("bad-close")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1011));
}

#[tokio::test]
async fn a_panicking_handler_closes_its_connection_with_1011_and_nothing_else() {
    let (addr, endpoint) = serve(SocketOptions::default()).await;
    let mut other = connect(addr, "bystander").await;
    let mut ws = connect(addr, "panicker").await;
    ws.send(Message::text("panic")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1011));
    other.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut other).await, Message::text("STILL HERE"));
    support::eventually("the panicked one ends", || endpoint.metrics().connections_open == 1).await;
    assert_eq!(ended("panicker"), [Ended::Closed]);
}

#[tokio::test]
async fn refusals_limits_and_the_origin_check_are_the_sockets() {
    let options =
        SocketOptions { max_frame_size: 1000, idle_timeout: Duration::from_millis(300), ..SocketOptions::default() };
    let (addr, endpoint) = serve(options).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/shout/websocket?name=nobody")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/shout/websocket"
    ))
    .unwrap();
    request.headers_mut().insert("origin", "https://elsewhere.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut ws = connect(addr, "large").await;
    ws.send(Message::text("x".repeat(1001))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    let mut ws = connect(addr, "silent").await;
    assert_eq!(close_code(&mut ws).await, Some(1001), "closed once idle");
    let refusals = endpoint.metrics().connections_refused;
    assert_eq!(refusals, 2, "{refusals}");
}

#[tokio::test]
async fn a_shutdown_closes_with_1012_and_terminates_with_shutdown() {
    let endpoint = Endpoint::new().raw_socket("/shout", Shouter { name: String::new() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(endpoint.serve_with_shutdown(listener, async move {
        let _ = stopped.await;
    }));
    let mut ws = connect(addr, "drained").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("HI"));
    stop.send(()).unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1012));
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    assert_eq!(ended("drained"), [Ended::Shutdown]);
}
