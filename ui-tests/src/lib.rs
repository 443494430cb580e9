//! The compile-fail and pass cases of the macros (`tests/ui/`, trybuild):
//! what a user of `phx-channels` sees when a `socket!`, `#[channel]` or
//! `#[derive(Encode)]` is wrong. Nothing here is published.
