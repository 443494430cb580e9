//! `#[derive(Encode)]`: field selection, raw identifiers, generics,
//! lifetimes, bounds only where needed.
#![deny(warnings)]

use std::marker::PhantomData;

use channels::Encode;
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
#[encode(crate = channels)]
struct Renamed {
    id: u64,
}

#[derive(Encode)]
#[encode(except = [a, b])]
struct Nothing {
    a: u8,
    b: u8,
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
}
