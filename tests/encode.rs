//! `#[derive(Encode)]` options, checked on the JSON they produce and on the
//! serializer calls behind it (`serde_test`, which also checks the field
//! count `serialize_struct` is told). Clippy's pedantic lints run over
//! the expansions here.
#![deny(warnings, unused, clippy::pedantic)]

use phx_channels::prelude::*;
use serde_test::{assert_ser_tokens, Token};

/// `rename_all` with a `rename` that wins over it, `skip_none` on the
/// struct, `except` naming a Rust field.
#[derive(Encode)]
#[encode(rename_all = "camelCase", skip_none, except = [password_hash])]
struct Comment {
    thread_id: u64,
    #[encode(rename = "author")]
    user_id: Option<u64>,
    edited_at: Option<&'static str>,
    password_hash: &'static str,
}

#[test]
fn rename_all_rename_and_skip_none() {
    let full = Comment { thread_id: 1, user_id: Some(2), edited_at: Some("now"), password_hash: "x" };
    assert_eq!(serde_json::to_value(&full).unwrap(), json!({"threadId": 1, "author": 2, "editedAt": "now"}));
    assert_eq!(full.password_hash, "x", "left out of the encoding, not of the struct");
    let sparse = Comment { thread_id: 1, user_id: None, edited_at: None, password_hash: "x" };
    assert_eq!(serde_json::to_string(&sparse).unwrap(), r#"{"threadId":1}"#);
    assert_eq!(serde_json::to_value(sparse.encoded()).unwrap(), json!({"threadId": 1}));
}

#[test]
fn skipped_fields_are_not_counted() {
    let sparse = Comment { thread_id: 1, user_id: None, edited_at: Some("now"), password_hash: "x" };
    assert_ser_tokens(
        &sparse,
        &[
            Token::Struct { name: "Comment", len: 2 },
            Token::Str("threadId"),
            Token::U64(1),
            Token::Str("editedAt"),
            Token::Some,
            Token::Str("now"),
            Token::StructEnd,
        ],
    );
    let none = Comment { thread_id: 1, user_id: None, edited_at: None, password_hash: "x" };
    assert_ser_tokens(
        &none,
        &[Token::Struct { name: "Comment", len: 1 }, Token::Str("threadId"), Token::U64(1), Token::StructEnd],
    );
}

/// `skip_none` on one field only: the other `Option` stays, as `null`.
#[derive(Encode)]
struct Reply {
    #[encode(skip_none)]
    error: Option<String>,
    parent_id: Option<u64>,
}

#[test]
fn skip_none_on_one_field() {
    let reply = Reply { error: None, parent_id: None };
    assert_eq!(serde_json::to_string(&reply).unwrap(), r#"{"parent_id":null}"#);
    let reply = Reply { error: Some("no".into()), parent_id: Some(3) };
    assert_eq!(serde_json::to_value(&reply).unwrap(), json!({"error": "no", "parent_id": 3}));
}

/// The same struct under serde and under `Encode` for every rule: the wire
/// names must agree, or a model would show REST and channels two spellings.
macro_rules! same_as_serde {
    ($($rule:literal => $serde:ident, $encode:ident;)*) => {$(
        #[derive(serde::Serialize)]
        #[serde(rename_all = $rule)]
        struct $serde {
            user_id: u8,
            r#type: u8,
            _private: u8,
            x2_y: u8,
        }

        #[derive(Encode)]
        #[encode(rename_all = $rule)]
        struct $encode {
            user_id: u8,
            r#type: u8,
            _private: u8,
            x2_y: u8,
        }

        assert_eq!(
            serde_json::to_string(&$encode { user_id: 1, r#type: 2, _private: 3, x2_y: 4 }).unwrap(),
            serde_json::to_string(&$serde { user_id: 1, r#type: 2, _private: 3, x2_y: 4 }).unwrap(),
            "rename_all = {:?}",
            $rule,
        );
    )*};
}

#[test]
fn rename_all_matches_serde() {
    same_as_serde! {
        "lowercase" => SerdeLower, EncodeLower;
        "UPPERCASE" => SerdeUpper, EncodeUpper;
        "PascalCase" => SerdePascal, EncodePascal;
        "camelCase" => SerdeCamel, EncodeCamel;
        "snake_case" => SerdeSnake, EncodeSnake;
        "SCREAMING_SNAKE_CASE" => SerdeScreaming, EncodeScreaming;
        "kebab-case" => SerdeKebab, EncodeKebab;
        "SCREAMING-KEBAB-CASE" => SerdeScreamingKebab, EncodeScreamingKebab;
    }
    // Not vacuous: the rules do change names.
    assert_eq!(
        serde_json::to_string(&EncodeScreamingKebab { user_id: 1, r#type: 2, _private: 3, x2_y: 4 }).unwrap(),
        r#"{"USER-ID":1,"TYPE":2,"-PRIVATE":3,"X2-Y":4}"#
    );
}

/// A model with its own `Serialize` for the REST API; channels see the
/// `Encode` shape through `.encoded()`.
#[derive(serde::Serialize, Encode)]
#[encode(only = [id, content], rename_all = "camelCase", impl_serialize = false)]
struct Post {
    id: u64,
    content: String,
    author_email: String,
}

#[test]
fn encode_beside_serialize() {
    let post = Post { id: 7, content: "hi".into(), author_email: "a@example.com".into() };
    assert_eq!(
        serde_json::to_value(&post).unwrap(),
        json!({"id": 7, "content": "hi", "author_email": "a@example.com"}),
        "REST keeps serde's shape"
    );
    assert_eq!(json!({"post": post.encoded()}), json!({"post": {"id": 7, "content": "hi"}}));
    let posts = vec![post];
    assert_eq!(serde_json::to_value(posts.encoded()).unwrap(), json!([{"id": 7, "content": "hi"}]));
}

/// Without `impl_serialize = false` the type is `Serialize` and `Encode`
/// with one shape, so channel code can use `.encoded()` for every model.
#[test]
fn default_implements_both() {
    let reply = Reply { error: None, parent_id: Some(1) };
    assert_eq!(serde_json::to_value(reply.encoded()).unwrap(), serde_json::to_value(&reply).unwrap());
}

/// Generic: `T` is bounded because an encoded field uses it, through
/// `.encoded()` as through `Serialize`.
#[derive(Encode)]
#[encode(impl_serialize = false, skip_none)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u32>,
}

#[test]
fn generic_encode_only() {
    let page = Page { items: vec!["a"], next: None };
    assert_eq!(serde_json::to_value(page.encoded()).unwrap(), json!({"items": ["a"]}));
    assert_ser_tokens(
        &page.encoded(),
        &[
            Token::Struct { name: "Page", len: 1 },
            Token::Str("items"),
            Token::Seq { len: Some(1) },
            Token::Str("a"),
            Token::SeqEnd,
            Token::StructEnd,
        ],
    );
}
