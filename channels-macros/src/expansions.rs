//! Expansion snapshots: what each macro turns representative inputs into,
//! pretty-printed, checked against `src/snapshots/*.snap`.
//!
//! A change to an expansion fails these tests (in CI, where `CI=true`, insta
//! never writes snapshots). To accept an intended change, run
//! `INSTA_UPDATE=always cargo test -p phx-channels-macros` (or
//! `cargo insta review`) and commit the updated `.snap` files; the diff is
//! what users get.

use proc_macro2::TokenStream;
use quote::quote;

/// The expansion as a person would format it. Panics if it is not a valid
/// file or reports an error.
fn pretty(expansion: TokenStream) -> String {
    let text = expansion.to_string();
    assert!(!text.contains("compile_error"), "the expansion reports an error: {text}");
    let file = syn::parse2::<syn::File>(expansion).unwrap_or_else(|e| panic!("not a valid file ({e}): {text}"));
    prettyplease::unparse(&file)
}

macro_rules! snapshot {
    ($name:literal, $expansion:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!($name, pretty($expansion));
        })
    };
}

#[test]
fn socket_routes() {
    snapshot!(
        "socket_routes",
        crate::socket::socket(quote! {
            /// The socket browsers connect to at /socket.
            #[derive(Clone, Copy, Debug)]
            pub UserSocket {
                channel "lobby" => Lobby;
                channel "comments:*" => crate::chans::Comments;
                channel "room:lobby" => Room<u8>;
                channel "room:*" => Room<String>;
            }
        })
    );
}

#[test]
fn socket_crate_override() {
    snapshot!(
        "socket_crate_override",
        crate::socket::socket(quote! {
            #![crate = crate::reexport::chans]
            pub(crate) Sock {
                channel "a:*" => A;
            }
        })
    );
}

/// Every handler form: `join` with the socket, `#[handle_in]` sync and
/// async, with and without the socket, `&self`, a `Result` reply, two
/// events on one method, `intercept` + `#[handle_out]`, two
/// `#[handle_info]` and `terminate`.
#[test]
fn channel_every_handler() {
    snapshot!(
        "channel_every_handler",
        crate::channel::channel(
            quote!(socket = UserSocket, intercept = ["message:new", "typing"]),
            quote! {
                impl Room {
                    async fn join(topic: Topic, params: RoomParams, socket: &mut Socket<UserSocket>) -> Join<Self> {
                        Ok((json!({}), Room { ticks: 0 }))
                    }

                    #[handle_in("ping")]
                    #[handle_in("ping:again")]
                    fn ping(&self, payload: Payload) -> Reply {
                        Reply::payload(Status::Ok, payload)
                    }

                    #[handle_in("comment:add")]
                    async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
                        socket.broadcast("comment:new", &new)?;
                        Ok(Reply::ok(json!({})))
                    }

                    #[handle_in("noop")]
                    async fn noop(&mut self, _payload: Value) {}

                    #[handle_out("message:new")]
                    async fn message_new(&mut self, payload: Value, socket: &mut Socket<UserSocket>) -> Result<(), BroadcastError> {
                        socket.push("message:new", &payload)
                    }

                    #[handle_info]
                    fn tick(&mut self, tick: Tick) {
                        self.ticks += tick.0;
                    }

                    #[handle_info]
                    async fn flush(&mut self, _flush: Flush, socket: &mut Socket<UserSocket>) -> Reply {
                        Reply::stop()
                    }

                    async fn terminate(&mut self, reason: &Terminate) {}

                    fn helper(&self) -> u32 {
                        self.ticks
                    }
                }
            },
        )
    );
}

/// History kept by a channel's topics: bare (the runtime's defaults) and
/// with every bound given.
#[test]
fn channel_history() {
    snapshot!(
        "channel_history",
        crate::channel::channel(
            quote!(socket = UserSocket, history(size = 500, age = "10m", max_bytes = 4194304)),
            quote! {
                impl Comments {
                    async fn join(topic: Topic, params: Value) -> Join<Self> {
                        Ok((json!({}), Comments))
                    }
                }
            },
        )
    );
    snapshot!(
        "channel_history_default",
        crate::channel::channel(
            quote!(socket = UserSocket, history),
            quote! {
                impl Feed {
                    async fn join(topic: Topic, params: Value) -> Join<Self> {
                        Ok((json!({}), Feed))
                    }
                }
            },
        )
    );
}

/// The types `describe` reads: declared pushes (`out`, one with a `*`), a
/// `Join<Self, R>` response, a `Valid<T>` payload with a `TypedReply`, and
/// a return type naming `impl Trait`, which leaves that event untyped.
#[test]
fn channel_typed() {
    snapshot!(
        "channel_typed",
        crate::channel::channel(
            quote!(socket = UserSocket, out = ["comments:*:new" => NewCommentEvent, "typing" => Value]),
            quote! {
                impl Comments {
                    async fn join(topic: Topic, params: Value) -> Join<Self, Joined> {
                        Ok((Joined { comments: vec![] }, Comments))
                    }

                    #[handle_in("comment:add")]
                    async fn add(&mut self, new: Valid<NewComment>) -> Result<TypedReply<Added, Full>, BroadcastError> {
                        Ok(TypedReply::ok(Added {}))
                    }

                    #[handle_in("raw")]
                    fn raw(&mut self, payload: Payload) -> impl IntoReply {
                        Reply::ok(payload)
                    }
                }
            },
        )
    );
}

/// The least a channel can be: a generic impl with a where clause, a sync
/// `join` without the socket, no handlers, `crate = path`.
#[test]
fn channel_generic_minimal() {
    snapshot!(
        "channel_generic_minimal",
        crate::channel::channel(
            quote!(socket = UserSocket, crate = crate::reexport::chans),
            quote! {
                impl<T> Lobby<T>
                where
                    T: Default + Send + 'static,
                {
                    fn join(_topic: Topic, _params: Value) -> Join<Self> {
                        Ok((json!({}), Lobby(T::default())))
                    }
                }
            },
        )
    );
}

#[test]
fn encode_all_fields_raw_identifiers() {
    snapshot!(
        "encode_all_fields_raw_identifiers",
        crate::encode::derive(
            quote! {
                struct r#Match {
                    id: u64,
                    r#type: &'static str,
                }
            },
            None
        )
    );
}

#[test]
fn encode_only() {
    snapshot!(
        "encode_only",
        crate::encode::derive(
            quote! {
                #[encode(only = [content, r#type])]
                pub struct Comment {
                    r#type: &'static str,
                    content: String,
                    password_hash: String,
                }
            },
            None
        )
    );
}

/// `except`, lifetimes, type parameters bounded only when an encoded field
/// uses them, an existing where clause, `crate = path`.
#[test]
fn encode_except_generics() {
    snapshot!(
        "encode_except_generics",
        crate::encode::derive(
            quote! {
                #[encode(except = [hidden], crate = crate::reexport::chans)]
                pub(crate) struct Page<'a, T, U, M>
                where
                    T: Clone,
                {
                    items: &'a [T],
                    hidden: U,
                    marker: PhantomData<M>,
                }
            },
            None
        )
    );
}

#[test]
fn encode_no_fields() {
    snapshot!(
        "encode_no_fields",
        crate::encode::derive(
            quote! {
                #[encode(except = [a, b])]
                struct Nothing {
                    a: u8,
                    b: u8,
                }
            },
            None
        )
    );
}

/// A type parameter named like the serializer's gets another name.
#[test]
fn encode_serializer_name_taken() {
    snapshot!(
        "encode_serializer_name_taken",
        crate::encode::derive(
            quote! {
                struct Wrapper<__S> {
                    inner: __S,
                }
            },
            None
        )
    );
}

/// `rename_all` with a `rename` that wins over it, `skip_none` on the
/// struct (every `Option` field) and on a field: the count
/// `serialize_struct` is told follows the fields that are `Some`.
#[test]
fn encode_rename_skip_none() {
    snapshot!(
        "encode_rename_skip_none",
        crate::encode::derive(
            quote! {
                #[derive(Debug)]
                #[encode(rename_all = "camelCase", skip_none, except = [password_hash])]
                pub struct Comment {
                    comment_id: u64,
                    #[encode(rename = "author")]
                    user_id: Option<u64>,
                    edited_at: ::std::option::Option<String>,
                    password_hash: String,
                }
            },
            None
        )
    );
}

/// Generics with a `skip_none` field: `Serialize` and `Encode` bounded
/// alike, `IntoPayload` by value, no `TypeScript` (a probe cannot see
/// through a type parameter).
#[test]
fn encode_generic_skip_none() {
    snapshot!(
        "encode_generic_skip_none",
        crate::encode::derive(
            quote! {
                #[encode(only = [content, parent_id])]
                pub struct Comment<T> {
                    content: T,
                    #[encode(skip_none)]
                    parent_id: Option<u64>,
                    author_email: String,
                }
            },
            None
        )
    );
}
