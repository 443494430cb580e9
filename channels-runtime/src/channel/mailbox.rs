//! A channel's mailbox, and [`ChannelRef`]: the handle other tasks use to
//! send a running channel messages (a channel's pid, in Elixir terms).

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use crate::protocol::Payload;

/// The queue and its wake-up, shared by a mailbox's senders and receiver.
///
/// A channel's mailbox is made for every join and mostly sits empty, so it
/// is built to cost little while idle: the queue allocates only while mail
/// waits, and there is no per-mailbox block of slots (tokio's unbounded
/// channel allocates one of 32 up front, and pads its fields to cache
/// lines: ~680 bytes per joined channel, against ~120 here).
struct Shared {
    queue: parking_lot::Mutex<VecDeque<Box<Mail>>>,
    /// Live [`MailSender`]s; the receiver sees the mailbox closed at 0.
    senders: AtomicUsize,
    /// The receiver closed the mailbox or is gone: sends fail.
    receiver_closed: AtomicBool,
    ready: Notify,
}

/// A new, empty mailbox.
pub(crate) fn mailbox() -> (MailSender, MailReceiver) {
    let shared = Arc::new(Shared {
        queue: parking_lot::Mutex::new(VecDeque::new()),
        senders: AtomicUsize::new(1),
        receiver_closed: AtomicBool::new(false),
        ready: Notify::new(),
    });
    (MailSender(shared.clone()), MailReceiver(shared))
}

/// The sending half of a channel's mailbox (the dispatcher holds the only
/// long-lived one: when it lets go, the channel sees its mailbox closed).
pub(crate) struct MailSender(Arc<Shared>);

/// A sender that does not keep the mailbox open (for [`ChannelRef`]).
#[derive(Clone)]
pub(crate) struct WeakMailSender(Weak<Shared>);

/// The receiving half, owned by the channel task.
pub(crate) struct MailReceiver(Arc<Shared>);

impl MailSender {
    /// Queues `mail`, or gives it back if the channel no longer reads.
    pub(crate) fn send(&self, mail: Box<Mail>) -> Result<(), Box<Mail>> {
        if self.0.receiver_closed.load(Ordering::Acquire) {
            return Err(mail);
        }
        self.0.queue.lock().push_back(mail);
        self.0.ready.notify_one();
        Ok(())
    }

    /// Whether the channel stopped reading (it ended).
    pub(crate) fn is_closed(&self) -> bool {
        self.0.receiver_closed.load(Ordering::Acquire)
    }

    pub(crate) fn downgrade(&self) -> WeakMailSender {
        WeakMailSender(Arc::downgrade(&self.0))
    }
}

impl Drop for MailSender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: wake the receiver to see the mailbox closed.
            self.0.ready.notify_one();
        }
    }
}

impl WeakMailSender {
    /// A sender, while the mailbox has one (a mailbox whose senders are all
    /// gone stays closed).
    pub(crate) fn upgrade(&self) -> Option<MailSender> {
        let shared = self.0.upgrade()?;
        shared.senders.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then(|| n + 1)).ok()?;
        Some(MailSender(shared))
    }
}

impl MailReceiver {
    /// The next mail; `None` once every sender is gone (or the mailbox was
    /// closed) and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Box<Mail>> {
        loop {
            // Registered before looking, so a send in between is not missed.
            let notified = self.0.ready.notified();
            if let Some(mail) = self.0.queue.lock().pop_front() {
                return Some(mail);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 || self.0.receiver_closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Stops taking mail: sends fail from now on; what is queued can still
    /// be received.
    pub(crate) fn close(&mut self) {
        self.0.receiver_closed.store(true, Ordering::Release);
    }
}

impl Drop for MailReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a channel task is told.
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
    /// An intercepted broadcast, for `handle_out`.
    Out { event: String, payload: Payload },
    /// The endpoint is shutting down.
    Shutdown,
}

/// A message sent to a channel with [`ChannelRef::send`] or
/// [`Socket::send_after`](crate::socket::Socket::send_after), as
/// `handle_info` receives it.
///
/// ```
/// use phx_channels_runtime::channel::Info;
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

/// A cloneable handle to a running channel, to send it messages from any
/// task; the channel receives them in `handle_info`.
///
/// A `ChannelRef` does not keep the channel alive: once the channel ends,
/// [`ChannelRef::send`] fails.
#[derive(Clone)]
pub struct ChannelRef {
    mailbox: WeakMailSender,
}

/// The channel a message was sent to has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel has ended")]
pub struct ChannelGone;

impl ChannelRef {
    pub(crate) fn new(mailbox: WeakMailSender) -> Self {
        ChannelRef { mailbox }
    }

    /// Sends `message` to the channel's `handle_info`.
    pub fn send<M: Any + Send>(&self, message: M) -> Result<(), ChannelGone> {
        self.send_mail(Mail::Info(Info::new(message)))
    }

    pub(crate) fn send_mail(&self, mail: Mail) -> Result<(), ChannelGone> {
        let mailbox = self.mailbox.upgrade().ok_or(ChannelGone)?;
        mailbox.send(Box::new(mail)).map_err(|_| ChannelGone)
    }

    /// Whether the channel is still running.
    pub fn is_alive(&self) -> bool {
        self.mailbox.upgrade().is_some_and(|m| !m.is_closed())
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

    #[tokio::test]
    async fn a_ref_does_not_keep_the_channel_alive() {
        let (tx, mut rx) = mailbox();
        let r = ChannelRef::new(tx.downgrade());
        assert!(r.send(1u8).is_ok());
        assert!(matches!(rx.recv().await.map(|m| *m), Some(Mail::Info(_))));
        drop(tx);
        assert_eq!(r.send(2u8), Err(ChannelGone));
        assert!(!r.is_alive());
        assert!(rx.recv().await.is_none(), "no sender left: closed");
    }

    #[tokio::test]
    async fn queued_mail_outlives_its_senders_and_a_closed_mailbox_refuses_more() {
        let (tx, mut rx) = mailbox();
        tx.send(Box::new(Mail::Displaced)).unwrap();
        tx.send(Box::new(Mail::Shutdown)).unwrap();
        drop(tx);
        assert!(matches!(rx.recv().await.map(|m| *m), Some(Mail::Displaced)));
        assert!(matches!(rx.recv().await.map(|m| *m), Some(Mail::Shutdown)));
        assert!(rx.recv().await.is_none());

        let (tx, mut rx) = mailbox();
        assert!(!tx.is_closed());
        rx.close();
        assert!(tx.is_closed());
        assert!(tx.send(Box::new(Mail::Displaced)).is_err());
        assert!(rx.recv().await.is_none());
        drop(rx);
        assert!(tx.send(Box::new(Mail::Displaced)).is_err());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_mail_and_for_the_last_sender() {
        let (tx, mut rx) = mailbox();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.map(|m| matches!(*m, Mail::Displaced));
            let end = rx.recv().await.is_none();
            (first, end)
        });
        tokio::task::yield_now().await;
        let weak = tx.downgrade();
        weak.upgrade().unwrap().send(Box::new(Mail::Displaced)).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert!(weak.upgrade().is_none(), "a closed mailbox stays closed");
        assert_eq!(waiting.await.unwrap(), (Some(true), true));
    }
}
