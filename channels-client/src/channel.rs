//! A channel on a client socket: join, push, events, leave.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};

use crate::command::{Command, Shared};
use crate::error::JoinError;
use crate::events::{EventPayloads, Events, Filter};
use crate::push::{Push, PushError};
use crate::state::ChannelState;
use phx_channels_protocol::{EncodeError, IntoPayload, Payload, Position, Serializer};

/// A topic about to be joined: [`Socket::channel`](super::Socket::channel).
#[derive(Debug)]
#[must_use = "a channel does nothing until joined"]
pub struct ChannelBuilder {
    shared: Arc<Shared>,
    topic: String,
    timeout: Duration,
    recover: Option<Option<Position>>,
}

impl ChannelBuilder {
    pub(crate) fn new(shared: Arc<Shared>, topic: String) -> Self {
        let timeout = shared.timeout;
        ChannelBuilder { shared, topic, timeout, recover: None }
    }

    /// The timeout of this channel's joins and pushes (the socket's, 10 s
    /// unless configured, by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Recovers on a topic whose broadcasts the server keeps (its history,
    /// `docs/recovery.md`): every join sends the last position the channel
    /// saw (`phx_position`), and the server sends what was missed since,
    /// in order and before anything live; each event carries its position
    /// ([`Event::position`](crate::Event::position)) and none is given
    /// twice. Every join is followed by a `phx_recovery` event
    /// ([`Recovery`](crate::Recovery)) that says whether it recovered;
    /// when it did not (too much missed, another epoch), the application
    /// reloads its state. The params must be a JSON object.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use phx_channels_client::{Recovery, Socket};
    /// use serde_json::{json, Value};
    ///
    /// let socket = Socket::connect("ws://127.0.0.1:4000/socket");
    /// let (chan, _): (_, Value) = socket.channel("comments:42").recover().join(json!({})).await?;
    /// let mut recoveries = chan.on("phx_recovery");
    /// tokio::spawn(async move {
    ///     while let Ok(report) = recoveries.recv().await {
    ///         let report: Recovery = report.decode().unwrap();
    ///         if !report.recovered {
    ///             // reload the state: what was missed is gone
    ///         }
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn recover(mut self) -> Self {
        self.recover = Some(None);
        self
    }

    /// [`ChannelBuilder::recover`] from a position kept from an earlier
    /// session ([`Channel::position`]), e.g. across a restart.
    pub fn recover_from(mut self, position: Position) -> Self {
        self.recover = Some(Some(position));
        self
    }

    /// Joins with `params` (sent again with every rejoin) and returns the
    /// channel and the join reply, decoded into `R` (`serde_json::Value`
    /// for any JSON).
    ///
    /// Waits for the socket to connect if it is not yet. A refusal is
    /// [`JoinError::Refused`] and the channel is gone; a refused connection
    /// ([`JoinError::Connect`]) fails it at once, and a server that cannot be
    /// reached fails it at the timeout with the last attempt's error. Once
    /// joined, the
    /// channel rejoins by itself, as phoenix.js does, after a `phx_error`, a
    /// refused or timed out rejoin, or a reconnect.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use phx_channels_client::Socket;
    /// use serde_json::{json, Value};
    ///
    /// let socket = Socket::connect("ws://127.0.0.1:4000/socket");
    /// let (chan, reply): (_, Value) = socket.channel("comments:42").join(json!({})).await?;
    /// assert_eq!(reply["hey"], "there");
    /// # let _ = chan; Ok(()) }
    /// ```
    pub async fn join<R: DeserializeOwned>(self, params: impl IntoPayload) -> Result<(Channel, R), JoinError> {
        let params = params.into_payload()?;
        if matches!((self.shared.serializer, &params), (Serializer::V1, Payload::Binary(_))) {
            return Err(EncodeError::BinaryNotSupported.into());
        }
        let id = self.shared.next_channel.fetch_add(1, Ordering::Relaxed);
        let (state_tx, state) = watch::channel(ChannelState::Joining);
        let (position_tx, position) = watch::channel(self.recover.clone().flatten());
        let (reply_tx, reply) = oneshot::channel();
        let join = Command::Join {
            id,
            topic: self.topic.clone(),
            params,
            timeout: self.timeout,
            state: state_tx,
            reply: reply_tx,
            recover: self.recover,
            position: position_tx,
        };
        if self.shared.commands.send(join).is_err() {
            return Err(JoinError::Closed);
        }
        let response = reply.await.unwrap_or(Err(JoinError::Closed))?;
        let chan = Channel { shared: self.shared, id, topic: self.topic, timeout: self.timeout, state, position };
        match response.decode() {
            Ok(reply) => Ok((chan, reply)),
            Err(error) => {
                // Left without waiting: the caller asked for a reply it cannot use.
                let _ = chan.request_leave();
                Err(error.into())
            }
        }
    }
}

/// A joined channel. Cheap to clone; every clone is the same channel.
///
/// The channel stays on the socket until it is left or closed by the
/// server, whether or not a handle is kept (phoenix.js's channels do too);
/// the socket's task runs while any [`Socket`](super::Socket) or `Channel`
/// handle lives.
#[derive(Debug, Clone)]
pub struct Channel {
    shared: Arc<Shared>,
    id: u64,
    topic: String,
    timeout: Duration,
    state: watch::Receiver<ChannelState>,
    position: watch::Receiver<Option<Position>>,
}

impl Channel {
    /// The position of the last broadcast given to the application, on a
    /// channel that recovers ([`ChannelBuilder::recover`]); where its next
    /// rejoin asks to be sent what it missed from.
    pub fn position(&self) -> Option<Position> {
        self.position.borrow().clone()
    }

    /// The topic, e.g. `comments:42`.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where the channel is now.
    pub fn state(&self) -> ChannelState {
        *self.state.borrow()
    }

    /// Every change of [`Channel::state`], to wait for one:
    /// `chan.watch_state().wait_for(|s| *s == ChannelState::Joined).await`.
    pub fn watch_state(&self) -> watch::Receiver<ChannelState> {
        self.state.clone()
    }

    /// Pushes `event` with `payload` (`&impl Serialize`, a JSON `Value`,
    /// or `Bytes` / `Vec<u8>` for a binary frame over V2) and returns its
    /// reply, with the channel's timeout.
    ///
    /// While the socket is disconnected or the channel rejoining, the push
    /// waits (phoenix.js's push buffer) and goes out once joined; its
    /// timeout runs meanwhile, and starts again when it is sent.
    pub fn push(&self, event: &str, payload: impl IntoPayload) -> Push {
        self.push_with_timeout(event, payload, self.timeout)
    }

    /// [`Channel::push`] with its own timeout.
    pub fn push_with_timeout(&self, event: &str, payload: impl IntoPayload, timeout: Duration) -> Push {
        let payload = match payload.into_payload() {
            Ok(payload) => payload,
            Err(error) => return Push::failed(error.into()),
        };
        if matches!((self.shared.serializer, &payload), (Serializer::V1, Payload::Binary(_))) {
            return Push::failed(EncodeError::BinaryNotSupported.into());
        }
        let (reply, rx) = oneshot::channel();
        let push = Command::Push { id: self.id, event: event.to_owned(), payload, timeout, reply };
        match self.shared.commands.send(push) {
            Ok(()) => Push::waiting(rx),
            Err(_) => Push::failed(PushError::Closed),
        }
    }

    /// The payloads of `event`, as they arrive.
    ///
    /// Events that arrived before any stream asked for them (since the
    /// join) are kept for the first stream that does (up to 256), so a push
    /// made right after the join reply is not missed.
    ///
    /// The stream holds at most [`SocketBuilder::event_buffer`] events: read
    /// too slowly, it drops its oldest and says how many, as an
    /// `Err(`[`Lagged`]`)` before the next payload.
    ///
    /// [`SocketBuilder::event_buffer`]: crate::SocketBuilder::event_buffer
    /// [`Lagged`]: crate::Lagged
    pub fn on(&self, event: &str) -> EventPayloads {
        self.subscribe(Filter::Only(vec![event.to_owned()])).payloads()
    }

    /// Every event of the channel (pushes and broadcasts, and the
    /// `phx_error` / `phx_close` the server sends), as they arrive;
    /// bounded as [`Channel::on`] is.
    pub fn events(&self) -> Events {
        self.subscribe(Filter::All)
    }

    pub(crate) fn subscribe(&self, filter: Filter) -> Events {
        let (tx, events) = Events::new(self.shared.event_buffer);
        // When the socket's task is gone, the stream simply ends.
        let _ = self.shared.commands.send(Command::Subscribe { id: self.id, filter, tx });
        events
    }

    /// Leaves the channel: `phx_leave`, then the channel is closed (on the
    /// server's reply or the timeout, as phoenix.js does). `Ok` when the
    /// server acknowledged it.
    pub async fn leave(&self) -> Result<(), PushError> {
        match self.request_leave() {
            Some(left) => left.await.unwrap_or(Ok(())),
            // The socket's task is gone, and the channel with it.
            None => Ok(()),
        }
    }

    /// Sends the leave now, whether or not its outcome is awaited.
    fn request_leave(&self) -> Option<oneshot::Receiver<Result<(), PushError>>> {
        let (reply, rx) = oneshot::channel();
        let leave = Command::Leave { id: self.id, timeout: self.timeout, reply };
        self.shared.commands.send(leave).ok().map(|()| rx)
    }
}
