// A hand-written `Serialize` beside `#[derive(Encode)]`: a derive cannot see
// other impls, so this is rustc's E0119, with the conflicting
// implementation at the `Encode` token. No way was found to add a hint to
// E0119 itself; docs/macros.md explains it under "Common mistakes".
use phx_channels::Encode;
use serde::ser::{Serialize, SerializeStruct, Serializer};

#[derive(Encode)]
#[encode(only = [id])]
struct Row {
    id: i64,
    secret: String,
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut row = serializer.serialize_struct("Row", 2)?;
        row.serialize_field("id", &self.id)?;
        row.serialize_field("secret", &self.secret)?;
        row.end()
    }
}

fn main() {}
