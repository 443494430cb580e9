//! A channel's mailbox, and [`ChannelRef`]: the handle other tasks use to
//! send a running channel messages (a channel's pid, in Elixir terms).

use std::any::{Any, TypeId};
use std::fmt;

use tokio::sync::mpsc;

use crate::protocol::Payload;

/// The sending half of a channel's mailbox.
///
/// Mail travels boxed: tokio's channel allocates its first block of 32
/// slots when it is made, so slots the size of a pointer keep the mailbox
/// of an idle channel small (about 300 bytes instead of about 3 KB).
pub(crate) type MailSender = mpsc::UnboundedSender<Box<Mail>>;
/// The receiving half of a channel's mailbox.
pub(crate) type MailReceiver = mpsc::UnboundedReceiver<Box<Mail>>;

/// A new, empty mailbox.
pub(crate) fn mailbox() -> (MailSender, MailReceiver) {
    mpsc::unbounded_channel()
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
/// use channels_runtime::channel::Info;
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
    mailbox: mpsc::WeakUnboundedSender<Box<Mail>>,
}

/// The channel a message was sent to has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel has ended")]
pub struct ChannelGone;

impl ChannelRef {
    pub(crate) fn new(mailbox: mpsc::WeakUnboundedSender<Box<Mail>>) -> Self {
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

    #[test]
    fn a_ref_does_not_keep_the_channel_alive() {
        let (tx, mut rx) = mailbox();
        let r = ChannelRef::new(tx.downgrade());
        assert!(r.send(1u8).is_ok());
        assert!(matches!(rx.try_recv().map(|m| *m), Ok(Mail::Info(_))));
        drop(tx);
        assert_eq!(r.send(2u8), Err(ChannelGone));
        assert!(!r.is_alive());
    }
}
