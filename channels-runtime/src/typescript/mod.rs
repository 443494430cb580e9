//! A socket's channels as a TypeScript module (with the `typescript`
//! feature): the types of every join, event and push, and a thin typed
//! layer over phoenix.js's `Socket` and `Channel`, so `tsc` rejects a wrong
//! event name, payload field or reply field.
//!
//! ```
//! # #[cfg(feature = "typescript")] {
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::describe::{ChannelShape, Declarations, EventShape, TypeScript};
//! use phx_channels::typescript::{render_shapes, RouteShape};
//!
//! struct Saved;
//! impl TypeScript for Saved {
//!     fn typescript(declarations: &mut Declarations) -> String {
//!         declarations.declare("Saved", "Saved", |_| "export type Saved = { id: number };".to_owned())
//!     }
//! }
//!
//! let mut lobby = ChannelShape::untyped("Lobby");
//! lobby.events = Some(vec![EventShape {
//!     event: "save",
//!     payload: phx_channels::describe::unknown,
//!     reply: Saved::typescript,
//!     errors: [phx_channels::describe::unknown, phx_channels::describe::never],
//! }]);
//! let module = render_shapes([RouteShape { pattern: "lobby", channel: lobby, history: false }]).unwrap();
//! assert!(module.contains("export type Saved = { id: number };"));
//! assert!(module.contains(r#""save": { payload: unknown; reply: Saved; error: unknown };"#));
//! assert!(module.contains(r#"export type Topic = "lobby";"#));
//! # }
//! ```
//!
//! Applications call `phx_channels::typescript::render::<UserSocket>()`
//! (see `docs/typescript.md`).

#[cfg(feature = "typescript")]
mod render;

#[cfg(feature = "typescript")]
pub use render::{
    render, render_shapes, render_shapes_strict, render_strict, route_shapes, RouteShape, TypeScriptError,
};
