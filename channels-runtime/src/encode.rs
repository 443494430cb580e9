//! What `#[derive(Encode)]` promises: a model's `serde::Serialize` **is** its
//! channel shape, as `@derive {Jason.Encoder, only: [..]}` is the one
//! encoder of a Phoenix schema.
//!
//! The derive implements `Serialize` with the chosen fields (renamed and
//! skipped as asked) and [`Encode`] on top of it. Rust allows one
//! `Serialize` impl per type, so every channel API that takes `&impl
//! Serialize` (replies, typed replies, join replies, `push`, `broadcast`,
//! `broadcast_from`, `local_broadcast`, `Endpoint::broadcast`, presence
//! metas, a model nested in `json!(..)`) can only ever send that shape:
//! there is no second one to send by mistake. A REST route that wants
//! other fields serializes a separate view type (see "A REST shape beside
//! the channel shape" in `docs/macros.md`).

use serde::Serialize;

/// A type whose `serde::Serialize` is the shape channel clients see,
/// chosen by `#[derive(Encode)]` (see the `phx-channels` crate).
///
/// A marker: the derive implements `Serialize` with the chosen fields and
/// `Encode` on top of it, and `Serialize` is the supertrait, so a type's
/// `Encode` shape and its `Serialize` shape cannot disagree. Implement it
/// by hand for a type whose hand-written `Serialize` is already its channel
/// shape.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::encode::Encode;
///
/// /// Serialized (for channels and everything else) as its content alone.
/// struct Comment { content: String, author_email: String }
///
/// impl serde::Serialize for Comment {
///     fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
///         serializer.serialize_str(&self.content)
///     }
/// }
///
/// impl Encode for Comment {}
///
/// let comment = Comment { content: "hi".into(), author_email: "a@example.com".into() };
/// assert_eq!(serde_json::json!({"comment": comment}), serde_json::json!({"comment": "hi"}));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say what channel clients see of it",
    label = "`{Self}` is not `Encode`",
    note = "add `#[derive(phx_channels::Encode)]` to `{Self}`, choosing its fields with `#[encode(only = [..])]`"
)]
pub trait Encode: Serialize {
    /// `self`: a model's `Serialize` is its channel shape, so there is
    /// nothing left to convert.
    #[deprecated(
        note = "a model's `Serialize` is its channel shape now: pass the value itself (`&value`, `json!({\"k\": value})`)"
    )]
    fn encoded(&self) -> &Self {
        self
    }
}

/// What [`Encode::encoded`] used to return: now the value itself.
#[deprecated(note = "a model's `Serialize` is its channel shape now: use `&T` (or `T`) where `Encoded<'_, T>` was")]
pub type Encoded<'a, T> = &'a T;

// Collections and references of `Encode` values are channel shapes too:
// their `Serialize` is element by element.

impl<T: Encode + ?Sized> Encode for &T {}

impl<T: Encode> Encode for [T] {}

impl<T: Encode> Encode for Vec<T> {}

impl<T: Encode> Encode for Option<T> {}

impl<T: Encode + ?Sized> Encode for Box<T> {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A hand-written channel shape.
    struct Id(u8);

    impl Serialize for Id {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_u8(self.0)
        }
    }

    impl Encode for Id {}

    fn channel_shape<T: Encode + ?Sized>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn collections_of_encode_values_are_encode() {
        let ids = vec![Id(1), Id(2)];
        assert_eq!(channel_shape(&ids), json!([1, 2]));
        assert_eq!(channel_shape(&ids[..1]), json!([1]));
        assert_eq!(channel_shape(&vec![&ids[1]]), json!([2]));
        assert_eq!(channel_shape(&Some(Id(4))), json!(4));
        assert_eq!(channel_shape(&None::<Id>), json!(null));
        assert_eq!(channel_shape(&Box::new(Id(5))), json!(5));
    }

    #[test]
    #[allow(deprecated)]
    fn encoded_is_the_value_itself() {
        let id = Id(7);
        let encoded: Encoded<'_, Id> = id.encoded();
        assert!(std::ptr::eq(encoded, &id));
        assert_eq!(json!({"id": id.encoded()}), json!({"id": 7}));
    }
}
