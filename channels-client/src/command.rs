//! How the handles ([`Socket`](crate::Socket), [`Channel`](crate::Channel))
//! talk to the socket's task: the [`Command`]s they send, over what they
//! share.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::JoinError;
use crate::events::{EventSender, Filter};
use crate::push::PushError;
use crate::queue::{self, Bound};
use crate::state::{ChannelState, ConnectionState, SocketEvent};
use phx_channels_protocol::{Payload, Position, Serializer};

/// What a handle asks of the socket's task.
pub(crate) enum Command {
    Join {
        id: u64,
        topic: String,
        params: Payload,
        timeout: Duration,
        state: watch::Sender<ChannelState>,
        reply: oneshot::Sender<Result<Payload, JoinError>>,
        /// Recovering: from this position (`Some(None)`: from the first join).
        recover: Option<Option<Position>>,
        /// Where the channel's position is published.
        position: watch::Sender<Option<Position>>,
    },
    Push {
        id: u64,
        event: String,
        payload: Payload,
        timeout: Duration,
        reply: oneshot::Sender<Result<Payload, PushError>>,
    },
    Subscribe {
        id: u64,
        filter: Filter,
        tx: EventSender,
    },
    Leave {
        id: u64,
        timeout: Duration,
        reply: oneshot::Sender<Result<(), PushError>>,
    },
    SocketEvents(queue::Sender<SocketEvent>),
    Disconnect,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Join { .. } => "Join",
            Command::Push { .. } => "Push",
            Command::Subscribe { .. } => "Subscribe",
            Command::Leave { .. } => "Leave",
            Command::SocketEvents(_) => "SocketEvents",
            Command::Disconnect => "Disconnect",
        };
        f.write_str(name)
    }
}

/// What the handles share with the socket's task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub commands: mpsc::UnboundedSender<Command>,
    pub next_channel: AtomicU64,
    pub serializer: Serializer,
    pub timeout: Duration,
    /// What each event stream holds at most.
    pub event_buffer: Bound,
    pub connection: watch::Receiver<ConnectionState>,
}
