//! Procedural macros of [`phx-channels`](https://docs.rs/phx-channels): `socket!`,
//! `#[channel]` and `#[derive(Encode)]`. Use them through the `phx-channels`
//! crate, which re-exports them.
//!
//! Each macro runs in three stages, in its own module: parse the input into
//! a syntax tree, validate it (collecting every independent mistake into one
//! combined `syn::Error`), and expand it into code that reaches the runtime
//! only through `::phx_channels::__private` (or `path::__private` with
//! `crate = path`).

#![deny(missing_docs)]

use proc_macro::TokenStream;

mod channel;
mod common;
mod encode;
#[cfg(test)]
mod expansions;
mod socket;

/// Declares a socket: a unit struct and the table of routes from topic
/// patterns to channels.
///
/// ```ignore
/// socket! {
///     /// The socket browsers connect to at /socket.
///     pub UserSocket {
///         channel "comments:*" => CommentsChannel;
///         channel "room:*"     => RoomChannel;
///     }
/// }
/// ```
///
/// A pattern is an exact topic (`"lobby"`) or a prefix ending in one `*`
/// (`"room:*"`). Routes are tried in order; a route that an earlier one
/// makes unreachable is a compile error. The socket still needs an
/// `impl Connect`. `#![crate = path]` at the start of the body points the
/// generated code at a re-export of `channels`.
#[proc_macro]
pub fn socket(input: TokenStream) -> TokenStream {
    socket::socket(input.into()).into()
}

/// Implements `Channel` from an inherent impl block.
///
/// ```ignore
/// #[channel(socket = UserSocket)]
/// impl CommentsChannel {
///     async fn join(topic: Topic, params: Value, socket: &mut Socket<UserSocket>) -> Join<Self> { .. }
///
///     #[handle_in("comment:add")]
///     async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Reply { .. }
/// }
/// ```
///
/// `join` takes the topic, the join params (any `Deserialize` type, `Value`
/// or `Payload`) and optionally the socket. Each `#[handle_in("event")]`
/// method takes `&mut self` or `&self`, the payload and optionally the
/// socket, and returns a `Reply`, a `TypedReply<T, E>`, `()` or a `Result`
/// of any of them. Other items are left alone. `crate = path` points the
/// generated code at a re-export of `channels`.
///
/// The impl also gets `Channel::describe`, the types the generated
/// TypeScript reads (`phx_channels::typescript`): the join params and
/// response, each event's payload, reply and error, and the pushed events
/// declared with `out = ["comments:*:new" => NewCommentEvent, ..]` (a `*`
/// stands for any text). A type TypeScript cannot be told about is
/// `unknown` there; nothing is required of any type.
#[proc_macro_attribute]
pub fn channel(args: TokenStream, item: TokenStream) -> TokenStream {
    channel::channel(args.into(), item.into()).into()
}

/// Derives `serde::Serialize` for a chosen subset of a struct's fields, and
/// `phx_channels::Encode` on top of it: the type's one shape, so every channel
/// API sends only the chosen fields.
///
/// ```ignore
/// #[derive(Encode)]
/// #[encode(only = [id, content, parent_id])]  // or `except = [password_hash]`
/// #[encode(rename_all = "camelCase", skip_none)]
/// struct Comment {
///     id: u64,
///     content: String,
///     parent_id: Option<u64>,                 // left out when `None`
///     #[encode(rename = "author")]
///     user_id: u64,
///     password_hash: String,
/// }
/// ```
///
/// Fields are serialized in declaration order under their names (without
/// `r#`), changed by `rename_all` (serde's rules and spellings) or a
/// field's `rename`; `only` and `except` name the Rust fields.
/// `skip_none` (on the struct: every `Option` field; on a field: that one)
/// leaves out fields that are `None`. Type parameters used by an encoded
/// field get a `Serialize` bound. A second `Serialize` (derived beside it,
/// written by hand) and `#[serde(..)]` attributes that would change a
/// serialized shape are compile errors: a REST shape with other fields is a
/// separate view type. `#[encode(crate = path)]` points the generated code
/// at a re-export of `channels`.
#[proc_macro_derive(Encode, attributes(encode))]
pub fn derive_encode(input: TokenStream) -> TokenStream {
    encode::derive(input.into(), Some(encode::CallSite::of_expansion())).into()
}

/// Marks a method of a [`macro@channel`] impl as the handler of a client
/// event: `#[handle_in("comment:add")]`. `#[channel]` consumes it; anywhere
/// else it is an error saying so.
#[proc_macro_attribute]
pub fn handle_in(_args: TokenStream, item: TokenStream) -> TokenStream {
    stray("handle_in", "#[handle_in(\"event\")]", item)
}

/// Marks a method of a [`macro@channel`] impl as the handler of an
/// intercepted broadcast: `#[handle_out("event")]` with
/// `#[channel(.., intercept = ["event"])]`.
#[proc_macro_attribute]
pub fn handle_out(_args: TokenStream, item: TokenStream) -> TokenStream {
    stray("handle_out", "#[handle_out(\"event\")]", item)
}

/// Marks a method of a [`macro@channel`] impl as the handler of messages of
/// its argument's type sent to the channel: `#[handle_info]`.
#[proc_macro_attribute]
pub fn handle_info(_args: TokenStream, item: TokenStream) -> TokenStream {
    stray("handle_info", "#[handle_info]", item)
}

/// A handler attribute outside a `#[channel]` impl: the item as written,
/// and an error at the attribute's use saying where it belongs.
fn stray(name: &str, example: &str, item: TokenStream) -> TokenStream {
    let message = format!(
        "`#[{name}]` only works on a method of an impl block marked `#[channel(socket = ..)]`, \
         which turns it into the channel's dispatch: put `#[channel(socket = YourSocket)]` on the \
         `impl` that holds this method, then `{example}` on the method"
    );
    let error = syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error();
    let mut out: proc_macro2::TokenStream = item.into();
    out.extend(error);
    out.into()
}
