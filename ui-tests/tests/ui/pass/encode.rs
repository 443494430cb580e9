//! `#[derive(Encode)]`: field selection, raw identifiers, generics,
//! lifetimes, bounds only where needed, renames, `skip_none`, and
//! `Deserialize` with its own serde attributes beside `Encode`.
#![deny(warnings)]

use std::marker::PhantomData;

use phx_channels::Encode;
use serde_json::json;

#[derive(Encode)]
struct All {
    a: u8,
    r#type: &'static str,
}

#[derive(Encode)]
#[encode(only = [content, r#type])]
struct Only {
    r#type: &'static str,
    content: String,
    secret: String,
}

#[derive(Encode)]
#[encode(except = [hidden])]
pub(crate) struct Generic<'a, T, U, M> {
    items: &'a [T],
    hidden: U,
    marker: PhantomData<M>,
}

/// Not `Serialize`: fine as `U` (left out) and `M` (in `PhantomData`).
struct Opaque;

#[derive(Encode)]
#[encode(crate = phx_channels)]
struct Renamed {
    id: u64,
}

#[derive(Encode)]
#[encode(except = [a, b])]
struct Nothing {
    a: u8,
    b: u8,
}

/// Every option at once, split over several attributes.
#[derive(Encode)]
#[encode(rename_all = "kebab-case")]
#[encode(skip_none, except = [r#secret])]
struct Options {
    user_id: u64,
    #[encode(rename = "TYPE")]
    r#type: &'static str,
    parent_id: Option<u64>,
    #[encode(skip_none)]
    edited_at: std::option::Option<u64>,
    r#secret: &'static str,
}

/// Read from clients with serde's `Deserialize` (and attributes only it
/// reads), sent with `Encode`'s `Serialize`.
#[derive(serde::Deserialize, Encode)]
#[serde(default, rename(deserialize = "Incoming"), bound(deserialize = ""))]
#[encode(only = [content], crate = phx_channels)]
struct Both {
    #[serde(alias = "text")]
    content: String,
    #[serde(rename(deserialize = "email"))]
    author_email: String,
    #[serde(skip_deserializing)]
    seen: u8,
}

impl Default for Both {
    fn default() -> Self {
        Both { content: "none".into(), author_email: String::new(), seen: 0 }
    }
}

fn main() {
    let v = serde_json::to_value(All { a: 1, r#type: "x" }).unwrap();
    assert_eq!(v, json!({"a": 1, "type": "x"}));

    let only = Only { r#type: "t", content: "hi".into(), secret: "s".into() };
    let text = serde_json::to_string(&only).unwrap();
    assert_eq!(text, r#"{"type":"t","content":"hi"}"#, "declaration order");

    let items = [1, 2];
    let g = Generic { items: &items, hidden: Opaque, marker: PhantomData::<Opaque> };
    assert_eq!(serde_json::to_value(&g).unwrap(), json!({"items": [1, 2], "marker": null}));

    assert_eq!(serde_json::to_value(Renamed { id: 3 }).unwrap(), json!({"id": 3}));
    assert_eq!(serde_json::to_value(Nothing { a: 1, b: 2 }).unwrap(), json!({}));

    let o = Options { user_id: 1, r#type: "t", parent_id: None, edited_at: Some(2), r#secret: "s" };
    assert_eq!(o.r#secret, "s");
    assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"user-id":1,"TYPE":"t","edited-at":2}"#);

    let both: Both = serde_json::from_value(json!({"email": "a@example.com"})).unwrap();
    assert_eq!((both.author_email.as_str(), both.seen), ("a@example.com", 0));
    assert_eq!(serde_json::to_value(&both).unwrap(), json!({"content": "none"}));
}
