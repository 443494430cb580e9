//! A connection's mailbox, and [`ChannelRef`]: the handle other tasks use
//! to send a joined channel messages (a channel's pid, in Elixir terms).
//!
//! A connection's channels run inside the connection's own task, so they
//! share one mailbox: each letter is addressed to a channel instance (its
//! generation on the connection) and the connection's task hands it to that
//! channel in order. Nothing is allocated for it until the first letter is
//! sent or the first [`ChannelRef`] is taken: most channels never get mail
//! from another task.

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::protocol::{Frame, Payload, Position};

/// What a channel is told, in the order it is told.
#[derive(Debug)]
pub(crate) enum Mail {
    /// A client event.
    In { msg_ref: Option<String>, event: String, payload: Payload },
    /// The client left.
    Leave { msg_ref: Option<String> },
    /// A newer join of the same topic on the same connection displaced it.
    Displaced,
    /// A message from another task or a timer, for `handle_info`.
    Info(Info),
    /// An intercepted broadcast, for `handle_out`; with its position on a
    /// topic with history, for a client that takes positions.
    Out { event: String, payload: Payload, position: Option<Position> },
    /// Frames of a broadcast with its position, for a channel that takes
    /// positions and intercepts events: sent in order with what its
    /// `handle_out` pushes.
    Frames { frame: Frame, after: Option<Frame>, offset: u64 },
    /// This node missed broadcasts the channel's client was owed: the
    /// channel ends with `phx_error`, and the client rejoins to recover.
    Resync,
    /// The connection closed.
    Closed,
    /// The endpoint is shutting down.
    Shutdown,
}

/// The letters other tasks sent a connection's channels, waiting for the
/// connection's task.
#[derive(Default)]
pub(crate) struct Mailbox {
    letters: Mutex<VecDeque<(u64, Mail)>>,
    /// The connection ended: letters are refused.
    closed: AtomicBool,
    task: AtomicWaker,
}

impl Mailbox {
    /// Queues `mail` for the channel instance `to`, waking the connection's
    /// task; gives it back once the connection has ended.
    pub(crate) fn post(&self, to: u64, mail: Mail) -> Result<(), Mail> {
        if self.closed.load(Ordering::Acquire) {
            return Err(mail);
        }
        self.letters.lock().push_back((to, mail));
        self.task.wake();
        Ok(())
    }

    /// Every letter queued so far, registering the connection's task to be
    /// woken by the next one.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<VecDeque<(u64, Mail)>> {
        self.task.register(cx.waker());
        let mut letters = self.letters.lock();
        if letters.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(std::mem::take(&mut *letters))
    }

    /// Refuses letters from now on and drops what is queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.letters.lock().clear();
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox").field("queued", &self.letters.lock().len()).finish_non_exhaustive()
    }
}

/// A message sent to a channel with [`ChannelRef::send`] or
/// [`Socket::send_after`](crate::socket::Socket::send_after), as
/// `handle_info` receives it.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::mailbox::Info;
///
/// struct Tick(u32);
/// let info = Info::new(Tick(3));
/// assert!(info.is::<Tick>());
/// let tick: Tick = info.downcast().ok().unwrap();
/// assert_eq!(tick.0, 3);
/// ```
pub struct Info {
    type_name: &'static str,
    message: Box<dyn Any + Send>,
}

impl Info {
    /// Wraps a message.
    pub fn new<M: Any + Send>(message: M) -> Self {
        Info { type_name: std::any::type_name::<M>(), message: Box::new(message) }
    }

    /// Whether the message is an `M`.
    pub fn is<M: Any>(&self) -> bool {
        (*self.message).type_id() == TypeId::of::<M>()
    }

    /// The message as an `M`, or the `Info` back if it is another type.
    pub fn downcast<M: Any>(self) -> Result<M, Info> {
        let Info { type_name, message } = self;
        message.downcast::<M>().map(|m| *m).map_err(|message| Info { type_name, message })
    }

    /// The message's type name, for logs.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Info({})", self.type_name)
    }
}

/// Where a [`ChannelRef`] delivers: one channel instance's address. The
/// channel holds the only strong reference and lets go when it ends, so a
/// `ChannelRef` knows whether its channel still runs without asking the
/// connection.
pub(crate) struct Address {
    mailbox: Arc<Mailbox>,
    channel: u64,
}

impl Address {
    pub(crate) fn new(mailbox: Arc<Mailbox>, channel: u64) -> Arc<Self> {
        Arc::new(Address { mailbox, channel })
    }
}

/// A cloneable handle to a running channel, to send it messages from any
/// task; the channel receives them in `handle_info`.
///
/// A `ChannelRef` does not keep the channel alive: once the channel ends,
/// [`ChannelRef::send`] fails.
#[derive(Clone)]
pub struct ChannelRef {
    address: Weak<Address>,
}

/// The channel a message was sent to has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel has ended")]
pub struct ChannelGone;

impl ChannelRef {
    pub(crate) fn new(address: &Arc<Address>) -> Self {
        ChannelRef { address: Arc::downgrade(address) }
    }

    /// Sends `message` to the channel's `handle_info`.
    pub fn send<M: Any + Send>(&self, message: M) -> Result<(), ChannelGone> {
        let address = self.address.upgrade().ok_or(ChannelGone)?;
        address.mailbox.post(address.channel, Mail::Info(Info::new(message))).map_err(|_| ChannelGone)
    }

    /// Whether the channel is still running.
    pub fn is_alive(&self) -> bool {
        self.address.upgrade().is_some_and(|a| !a.mailbox.closed.load(Ordering::Acquire))
    }
}

impl fmt::Debug for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelRef").field("alive", &self.is_alive()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downcast_gives_the_info_back_on_a_wrong_type() {
        let info = Info::new(5u8);
        let info = info.downcast::<String>().unwrap_err();
        assert_eq!(info.type_name(), "u8");
        assert_eq!(info.downcast::<u8>().unwrap(), 5);
    }

    #[test]
    fn a_ref_does_not_keep_the_channel_alive() {
        let mailbox = Arc::new(Mailbox::default());
        let address = Address::new(mailbox.clone(), 7);
        let r = ChannelRef::new(&address);
        assert!(r.send(1u8).is_ok());
        let waker = futures_util::task::noop_waker();
        let Poll::Ready(letters) = mailbox.poll_take(&mut Context::from_waker(&waker)) else { panic!("no mail") };
        assert!(matches!(letters.front(), Some((7, Mail::Info(_)))));
        drop(address);
        assert_eq!(r.send(2u8), Err(ChannelGone));
        assert!(!r.is_alive());
    }

    #[test]
    fn a_closed_mailbox_refuses_letters() {
        let mailbox = Arc::new(Mailbox::default());
        let address = Address::new(mailbox.clone(), 1);
        let r = ChannelRef::new(&address);
        mailbox.close();
        assert!(!r.is_alive());
        assert_eq!(r.send(1u8), Err(ChannelGone));
        let waker = futures_util::task::noop_waker();
        assert!(mailbox.poll_take(&mut Context::from_waker(&waker)).is_pending());
    }
}
