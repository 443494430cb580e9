//! Presence: who is on a topic, replicated across nodes.

pub(crate) mod replica;
