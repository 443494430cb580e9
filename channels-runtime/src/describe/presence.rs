//! The types of the two events Presence pushes, over an application's meta
//! type, for a channel's `out = [..]`:
//!
//! ```ignore
//! #[channel(socket = UserSocket, out = [
//!     "presence_state" => PresenceState<Online>,
//!     "presence_diff" => PresenceDiff<Online>,
//! ])]
//! ```
//!
//! Phoenix's shapes (`shared/conformance/PHOENIX_FRAMES.md`): a state maps
//! each key to its metas, each meta the application's with `phx_ref` (and
//! `phx_ref_prev` after an update); a diff is the state of the keys that
//! joined and of those that left.

use std::marker::PhantomData;

use super::{Declarations, TypeScript};

/// `presence_state`: `{[key]: {metas: [{phx_ref, ..meta}]}}`. Only a type
/// for the generated TypeScript (`Presence::list` builds the payload).
#[derive(Debug)]
pub struct PresenceState<M>(PhantomData<fn() -> M>);

/// `presence_diff`: `{joins: PresenceState<M>, leaves: PresenceState<M>}`.
/// Only a type for the generated TypeScript (Presence sends the diffs).
#[derive(Debug)]
pub struct PresenceDiff<M>(PhantomData<fn() -> M>);

/// Declares the generic presence types; returns `PresenceState`.
fn declare_state(declarations: &mut Declarations) -> String {
    declarations.declare("PresenceMeta", "phx_channels::describe::PresenceMeta", |_| {
        "/** One meta of a presence as Phoenix sends it: the application's, with its `phx_ref`. */\n\
         export type PresenceMeta<M> = M & { phx_ref: string; phx_ref_prev?: string };"
            .to_owned()
    });
    declarations.declare("PresenceState", "phx_channels::describe::PresenceState", |_| {
        "/** The `presence_state` payload: every key's metas. */\n\
         export type PresenceState<M> = { [key: string]: { metas: Array<PresenceMeta<M>> } };"
            .to_owned()
    })
}

/// The meta type `M` is the application's, typed like any other (an
/// `Encode` struct, or `Value`).
impl<M: TypeScript> TypeScript for PresenceState<M> {
    fn typescript(declarations: &mut Declarations) -> String {
        let state = declare_state(declarations);
        let meta = declarations.within("presence meta", M::typescript);
        format!("{state}<{meta}>")
    }
}

impl<M: TypeScript> TypeScript for PresenceDiff<M> {
    fn typescript(declarations: &mut Declarations) -> String {
        declare_state(declarations);
        let diff = declarations.declare("PresenceDiff", "phx_channels::describe::PresenceDiff", |_| {
            "/** The `presence_diff` payload: the keys that joined and those that left, with their metas. */\n\
             export type PresenceDiff<M> = { joins: PresenceState<M>; leaves: PresenceState<M> };"
                .to_owned()
        });
        let meta = declarations.within("presence meta", M::typescript);
        format!("{diff}<{meta}>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_over_the_meta() {
        let mut declarations = Declarations::new();
        assert_eq!(PresenceState::<serde_json::Value>::typescript(&mut declarations), "PresenceState<JsonValue>");
        assert_eq!(PresenceDiff::<serde_json::Value>::typescript(&mut declarations), "PresenceDiff<JsonValue>");
        let text: Vec<&str> = declarations.statements().collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(
            text[1].ends_with("export type PresenceState<M> = { [key: string]: { metas: Array<PresenceMeta<M>> } };")
        );
        assert!(declarations.unknowns().is_empty());
    }
}
