// `#[serde(..)]` attributes that would change a serde-derived shape: the
// `Serialize` `#[derive(Encode)]` writes ignores them, so
// `skip_serializing` would not keep `secret` off the wire. Each is
// reported with its `#[encode(..)]` counterpart; those that only concern
// `Deserialize` are fine (`default`, `alias`, `rename(deserialize = ..)`).
use phx_channels::Encode;

#[derive(serde::Deserialize, Encode)]
#[serde(rename_all = "camelCase", default)]
struct Row {
    #[serde(rename = "ident", alias = "key")]
    id: i64,
    #[serde(skip_serializing)]
    secret: String,
    #[serde(skip_serializing_if = "Option::is_none", rename(deserialize = "note"))]
    comment: Option<String>,
    #[serde(flatten)]
    extra: std::collections::HashMap<String, String>,
}

impl Default for Row {
    fn default() -> Self {
        Row { id: 0, secret: String::new(), comment: None, extra: Default::default() }
    }
}

fn main() {}
