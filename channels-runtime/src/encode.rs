//! What `#[derive(Encode)]` implements: how a value is shown to channel
//! clients, which may differ from its `serde::Serialize` (the shape a REST
//! API gives it).
//!
//! The derive always implements [`Encode`]; unless told
//! `#[encode(impl_serialize = false)]` it also implements `Serialize` with
//! the same shape, so the value can be passed to `json!` and
//! `Socket::broadcast` directly. With `impl_serialize = false` the type
//! keeps its own `Serialize`, and [`Encode::encoded`] gives the channel
//! shape wherever a `Serialize` value is expected.

use serde::{Serialize, Serializer};

/// A value with an encoding for channel clients.
///
/// Usually derived; see `#[derive(Encode)]` in the `phx-channels` crate.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::encode::Encode;
/// use serde::Serializer;
///
/// /// Serialized for the REST API with every field; channels only see `content`.
/// #[derive(serde::Serialize)]
/// struct Comment { content: String, author_email: String }
///
/// impl Encode for Comment {
///     fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
///         serializer.serialize_str(&self.content)
///     }
/// }
///
/// let comment = Comment { content: "hi".into(), author_email: "a@example.com".into() };
/// let rest = serde_json::to_value(&comment).unwrap();
/// assert_eq!(rest, serde_json::json!({"content": "hi", "author_email": "a@example.com"}));
/// let channel = serde_json::json!({"comment": comment.encoded()});
/// assert_eq!(channel, serde_json::json!({"comment": "hi"}));
/// ```
pub trait Encode {
    /// Serializes `self` as channel clients see it.
    ///
    /// # Errors
    ///
    /// Whatever `serializer` reports.
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// `self` as a `Serialize` value that serializes through
    /// [`encode`](Encode::encode): `json!({"comment": comment.encoded()})`.
    fn encoded(&self) -> Encoded<'_, Self> {
        Encoded(self)
    }
}

/// A borrowed value that serializes through its [`Encode`] impl; made by
/// [`Encode::encoded`].
pub struct Encoded<'a, T: ?Sized>(&'a T);

impl<T: ?Sized> Encoded<'_, T> {
    /// The value being encoded.
    #[must_use]
    pub fn get(&self) -> &T {
        self.0
    }
}

impl<T: Encode + ?Sized> Serialize for Encoded<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.encode(serializer)
    }
}

// Not derived: a derive would require `T: Clone`, but only the reference is
// copied.
impl<T: ?Sized> Clone for Encoded<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Encoded<'_, T> {}

impl<T: std::fmt::Debug + ?Sized> std::fmt::Debug for Encoded<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Encoded").field(&self.0).finish()
    }
}

// Collections of encoded values encode element by element, so a join reply
// can carry `comments.encoded()` for a `Vec<Comment>`.

impl<T: Encode + ?Sized> Encode for &T {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).encode(serializer)
    }
}

impl<T: Encode> Encode for [T] {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Encode::encoded))
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().encode(serializer)
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().encode(serializer)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(value) => serializer.serialize_some(&value.encoded()),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Encodes as its number, serializes as a string: which one a test
    /// sees tells which impl ran.
    #[derive(Debug)]
    struct Id(u8);

    impl Serialize for Id {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str("rest")
        }
    }

    impl Encode for Id {
        fn encode<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_u8(self.0)
        }
    }

    #[test]
    fn encoded_serializes_through_encode() {
        let id = Id(7);
        assert_eq!(serde_json::to_value(&id).unwrap(), json!("rest"));
        assert_eq!(serde_json::to_value(id.encoded()).unwrap(), json!(7));
        assert_eq!(id.encoded().get().0, 7);
        assert_eq!(format!("{:?}", id.encoded()), "Encoded(Id(7))");
    }

    #[test]
    fn collections_encode_each_element() {
        let ids = vec![Id(1), Id(2)];
        assert_eq!(serde_json::to_value(ids.encoded()).unwrap(), json!([1, 2]));
        assert_eq!(serde_json::to_value([Id(3)].encoded()).unwrap(), json!([3]));
        assert_eq!(serde_json::to_value(ids[..1].encoded()).unwrap(), json!([1]));
        assert_eq!(serde_json::to_value(vec![&ids[1]].encoded()).unwrap(), json!([2]));
        assert_eq!(serde_json::to_value(Some(Id(4)).encoded()).unwrap(), json!(4));
        assert_eq!(serde_json::to_value(None::<Id>.encoded()).unwrap(), json!(null));
    }
}
