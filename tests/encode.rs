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

/// A model: its `Serialize` is its channel shape, `id` and `content`.
#[derive(Encode)]
#[encode(only = [id, content], rename_all = "camelCase")]
struct Post {
    id: u64,
    content: String,
    author_email: String,
}

/// Its REST shape, a separate view that borrows it: every field.
#[derive(serde::Serialize)]
struct PostRest<'a> {
    id: u64,
    content: &'a str,
    author_email: &'a str,
}

impl<'a> From<&'a Post> for PostRest<'a> {
    fn from(post: &'a Post) -> Self {
        PostRest { id: post.id, content: &post.content, author_email: &post.author_email }
    }
}

/// The same view with serde's `remote`, which checks its fields against
/// the model's: a field renamed or retyped in `Post` fails to compile here.
#[derive(serde::Serialize)]
#[serde(remote = "Post")]
struct PostRemote {
    id: u64,
    content: String,
    author_email: String,
}

#[test]
fn a_rest_shape_is_a_separate_view() {
    let post = Post { id: 7, content: "hi".into(), author_email: "a@example.com".into() };
    let channel = json!({"id": 7, "content": "hi"});
    assert_eq!(serde_json::to_value(&post).unwrap(), channel);
    assert_eq!(json!({"post": post}), json!({"post": channel}), "nested in json!: the channel shape");
    let post = Post { id: 7, content: "hi".into(), author_email: "a@example.com".into() };
    let rest = json!({"id": 7, "content": "hi", "author_email": "a@example.com"});
    assert_eq!(serde_json::to_value(PostRest::from(&post)).unwrap(), rest);
    assert_eq!(PostRemote::serialize(&post, serde_json::value::Serializer).unwrap(), rest);
    let posts = vec![post];
    assert_eq!(serde_json::to_value(&posts).unwrap(), json!([channel]));
}

/// A model that is also read from clients: serde attributes that only
/// concern `Deserialize` are fine beside `Encode`.
#[derive(serde::Deserialize, Encode)]
#[serde(deny_unknown_fields, rename_all(deserialize = "camelCase"))]
#[encode(rename_all = "camelCase", except = [draft])]
struct Draft {
    #[serde(alias = "text")]
    body_text: String,
    #[serde(default)]
    draft: bool,
}

#[test]
fn deserialize_attributes_beside_encode() {
    let draft: Draft = serde_json::from_value(json!({"text": "hi"})).unwrap();
    assert!(!draft.draft);
    assert_eq!(serde_json::to_value(&draft).unwrap(), json!({"bodyText": "hi"}));
    assert!(serde_json::from_value::<Draft>(json!({"bodyText": "hi", "x": 1})).is_err());
}

/// Generic: `T` is bounded because an encoded field uses it.
#[derive(Encode)]
#[encode(skip_none)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u32>,
}

fn channel_shape<T: Encode>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn generic() {
    let page = Page { items: vec!["a"], next: None };
    assert_eq!(channel_shape(&page), json!({"items": ["a"]}));
    assert_ser_tokens(
        &page,
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

/// `.encoded()` stays for a release, deprecated: the value itself.
#[test]
#[allow(deprecated)]
fn encoded_is_deprecated_and_the_value_itself() {
    let reply = Reply { error: None, parent_id: Some(1) };
    let encoded: phx_channels::Encoded<'_, Reply> = reply.encoded();
    assert!(std::ptr::eq(encoded, &raw const reply));
}
