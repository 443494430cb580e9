//! A second `serde::Serialize` beside `#[derive(Encode)]`, which writes the
//! type's one `Serialize`: reported at the user's token with what to do,
//! wherever the derive can see it.
//!
//! - `#[serde(..)]` attributes that would change a serde-derived shape:
//!   the derive ignores them, so `#[serde(skip_serializing)]` would not
//!   keep a field off the wire (attributes that only concern
//!   `Deserialize` are fine);
//! - `#[derive(Serialize)]` in a later attribute, which the derive's input
//!   still holds;
//! - `Serialize` earlier in the derive's own attribute list, or in an
//!   attribute above it: gone from the input (rustc removes what it has
//!   expanded), so read from the source file at the derive's location
//!   ([`derives_before`]). Where the source cannot be read (the derive is
//!   written by another macro), rustc's E0119 still reports the conflict,
//!   at the `Encode` token.

use proc_macro2::{Span, TokenStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Meta, Path, Token};

use crate::common::Errors;

/// Why a second `Serialize` cannot be: the fix, shared by every message.
const INSTEAD: &str = "For a REST shape with other fields, serialize a separate view type (see \
                       \"A REST shape beside the channel shape\" in docs/macros.md)";

/// Reports `#[serde(..)]` keys that would change a serialized shape, and a
/// serde `Serialize` derived in a later attribute. Returns whether such a
/// derive was found (the type then has a `Serialize` already).
pub(crate) fn check(input: &DeriveInput, errors: &mut Errors) -> bool {
    let mut found = false;
    for attr in &input.attrs {
        if attr.path().is_ident("derive") {
            let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else { continue };
            for path in paths.iter().filter(|p| is_serde_serialize(p)) {
                found = true;
                errors.push_spanned(path, second_serialize(&path_text(path)));
            }
        }
    }
    check_serde_attrs(&input.attrs, None, errors);
    if let Data::Struct(data) = &input.data {
        for field in &data.fields {
            check_serde_attrs(&field.attrs, field.ident.as_ref(), errors);
        }
    }
    found
}

/// The error for a `Serialize` derived beside `Encode` (at `path`'s
/// token, or at `Encode`'s when it was read from the source).
pub(crate) fn second_serialize(path: &str) -> String {
    let rkyv = if path == "Serialize" {
        " (if this `Serialize` is not serde's, write it with its crate: `rkyv::Serialize`)"
    } else {
        ""
    };
    format!(
        "`#[derive(Encode)]` implements `serde::Serialize` itself, with the chosen fields: the one shape the type \
         has is the one every channel API sends, so `{path}` would be a second one{rkyv}. Remove `{path}` from \
         the derive. {INSTEAD}"
    )
}

/// Whether `path` names serde's `Serialize` derive. A bare `Serialize`
/// counts: it is serde's in all but rare code.
fn is_serde_serialize(path: &Path) -> bool {
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    matches!(names.as_slice(), ["Serialize"] | ["serde" | "serde_derive", "Serialize"])
}

fn path_text(path: &Path) -> String {
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() { "::" } else { "" };
    format!("{lead}{}", names.join("::"))
}

/// `#[serde(..)]` keys that only concern `Deserialize`.
const DESERIALIZE_ONLY: [&str; 12] = [
    "alias",
    "borrow",
    "crate",
    "default",
    "deny_unknown_fields",
    "deserialize_with",
    "expecting",
    "field_identifier",
    "from",
    "skip_deserializing",
    "try_from",
    "variant_identifier",
];

/// Keys that take `(serialize = .., deserialize = ..)`.
const SPLIT: [&str; 4] = ["rename", "rename_all", "rename_all_fields", "bound"];

fn check_serde_attrs(attrs: &[Attribute], field: Option<&syn::Ident>, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let Meta::List(list) = &attr.meta else {
            errors.push_spanned(attr, serde_key_message("serde", field));
            continue;
        };
        let Ok(metas) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) else {
            // Not serde's syntax: serde's derive reports it.
            continue;
        };
        for meta in metas {
            let key = meta.path();
            let Some(name) = key.get_ident().map(ToString::to_string) else { continue };
            if DESERIALIZE_ONLY.contains(&name.as_str()) || deserialize_only(&meta, &name) {
                continue;
            }
            errors.push_spanned(key, serde_key_message(&name, field));
        }
    }
}

/// `rename(deserialize = "..")` and the like: no `serialize` part.
fn deserialize_only(meta: &Meta, name: &str) -> bool {
    let Meta::List(list) = meta else { return false };
    if !SPLIT.contains(&name) {
        return false;
    }
    list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .is_ok_and(|parts| parts.iter().all(|part| part.path().is_ident("deserialize")))
}

/// What to write instead of `#[serde(key)]`.
fn serde_key_message(key: &str, field: Option<&syn::Ident>) -> String {
    let field = field.map_or_else(|| "field".to_owned(), crate::common::unraw);
    let instead = match key {
        "rename" if field != "field" => "for the channel name write `#[encode(rename = \"..\")]`; for \
                                          `Deserialize` alone, `#[serde(rename(deserialize = \"..\"))]`"
            .to_owned(),
        "rename_all" => "for the channel names write `#[encode(rename_all = \"..\")]` on the struct; for \
                         `Deserialize` alone, `#[serde(rename_all(deserialize = \"..\"))]`"
            .to_owned(),
        "skip" | "skip_serializing" => format!(
            "leave the field out of the channel shape with `#[encode(except = [{field}])]` (or list the others \
             in `only = [..]`); for `Deserialize` alone, `#[serde(skip_deserializing)]`"
        ),
        "skip_serializing_if" => "`#[encode(skip_none)]` on the field leaves it out while it is `None`".to_owned(),
        _ => "it has no `#[encode(..)]` counterpart: for a REST shape with other fields, serialize a separate \
              view type (see \"A REST shape beside the channel shape\" in docs/macros.md)"
            .to_owned(),
    };
    format!(
        "`#[serde({key})]` does not reach the wire: `#[derive(Encode)]` writes this type's `serde::Serialize` \
         from `#[encode(..)]` alone, which is the shape every channel API sends; {instead}"
    )
}

/// The paths derived before the derive macro whose path starts at byte
/// `offset` of `source`: earlier in its own `#[derive(..)]`, and in the
/// `#[derive(..)]` attributes right above it (line comments between them
/// skipped). Empty when the text there is not what it should be.
pub(crate) fn derives_before(source: &str, offset: usize) -> Vec<String> {
    let Some(prefix) = source.get(..offset) else { return Vec::new() };
    // The last `derive(` that is a word of its own (not `my_derive::X`).
    let Some((derive, inner)) = prefix.rmatch_indices("derive").find_map(|(at, _)| {
        let word = !prefix[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
        let inner = prefix[at + "derive".len()..].trim_start().strip_prefix('(')?;
        word.then_some((at, inner))
    }) else {
        return Vec::new();
    };
    let mut found = match parse_paths(inner) {
        Some(paths) => paths,
        None => return Vec::new(),
    };
    // The attribute's own `#[`: only then are the attributes above it the
    // same item's.
    let before = prefix[..derive].trim_end();
    let Some(hash) = before.strip_suffix('[').map(str::trim_end).and_then(|b| b.strip_suffix('#')) else {
        return found;
    };
    let mut end = hash.len();
    loop {
        let above = skip_line_comments(&source[..end]);
        if !above.ends_with(']') {
            break;
        }
        let Some(open) = matching_open(above) else { break };
        let Some(hash) = above[..open].trim_end().strip_suffix('#') else { break };
        let Some(paths) = derive_paths(&above[hash.len()..]) else { break };
        found.extend(paths);
        end = hash.len();
    }
    found
}

/// `text` without trailing whitespace and whole `//` lines at its end.
fn skip_line_comments(text: &str) -> &str {
    let mut text = text.trim_end();
    loop {
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        if text[line_start..].trim_start().starts_with("//") {
            text = text[..line_start].trim_end();
        } else {
            return text;
        }
    }
}

/// The `[` matching the `]` that ends `text`.
fn matching_open(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The paths of `#[derive(..)]`; `Some(empty)` for another attribute (which
/// the walk steps over), `None` for text that is not an attribute.
fn derive_paths(attr: &str) -> Option<Vec<String>> {
    let tokens: TokenStream = attr.parse().ok()?;
    let attrs = syn::parse::Parser::parse2(Attribute::parse_outer, tokens).ok()?;
    let mut paths = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let list = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated).ok()?;
        paths.extend(list.iter().map(path_text));
    }
    Some(paths)
}

/// `a, b::C, ` (the list before the derive): the paths, or `None`.
fn parse_paths(inner: &str) -> Option<Vec<String>> {
    let tokens: TokenStream = inner.parse().ok()?;
    let paths = syn::parse::Parser::parse2(Punctuated::<Path, Token![,]>::parse_terminated, tokens).ok()?;
    Some(paths.iter().map(path_text).collect())
}

/// A serde `Serialize` among `paths`, as written.
pub(crate) fn serialize_among(paths: &[String]) -> Option<&str> {
    paths
        .iter()
        .map(String::as_str)
        .find(|p| matches!(p.trim_start_matches("::"), "Serialize" | "serde::Serialize" | "serde_derive::Serialize"))
}

/// Where the derive being expanded was written, read from its source file:
/// the serde `Serialize` derived before it, if any. Only inside a real
/// macro expansion (`proc_macro` panics elsewhere).
pub(crate) fn sibling_serialize(call_site: proc_macro::Span) -> Option<String> {
    let file = call_site.local_file()?;
    let source = std::fs::read_to_string(file).ok()?;
    let line_start = if call_site.line() <= 1 {
        0
    } else {
        source.match_indices('\n').nth(call_site.line() - 2).map(|(i, _)| i + 1)?
    };
    let line = &source[line_start..];
    let column = line.char_indices().nth(call_site.column().checked_sub(1)?).map(|(i, _)| i)?;
    let offset = line_start + column;
    // Only where the text is the derive's own path.
    let text = call_site.source_text()?;
    if !source[offset..].starts_with(&text) {
        return None;
    }
    serialize_among(&derives_before(&source, offset)).map(str::to_owned)
}

/// The error for a `Serialize` derived before `Encode`, at the `Encode`
/// token.
pub(crate) fn sibling_error(path: &str, span: Span) -> syn::Error {
    syn::Error::new(span, second_serialize(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(source: &str) -> Vec<String> {
        let offset = source.find("Encode").unwrap();
        derives_before(source, offset)
    }

    #[test]
    fn reads_the_derives_written_before() {
        assert_eq!(before("#[derive(serde::Serialize, Encode)]\nstruct S;"), ["serde::Serialize"]);
        assert_eq!(before("#[derive(Debug,\n  Serialize, // REST\n  Encode,\n)]"), ["Debug", "Serialize"]);
        assert!(before("#[derive(Encode)]\nstruct S;").is_empty());
        let above =
            "/// A card.\n#[derive(Clone)]\n#[derive(::serde::Serialize)]\n// note\n#[cfg(test)]\n#[derive(Encode)]";
        assert_eq!(before(above), ["::serde::Serialize", "Clone"]);
        // The previous item's attributes are not this one's.
        assert!(before("#[derive(Serialize)]\nstruct A;\n#[derive(Encode)]\nstruct B;").is_empty());
        // A path that ends in `derive` is not the attribute.
        assert_eq!(before("#[derive(Serialize, my_derive::Thing, Encode)]"), ["Serialize", "my_derive::Thing"]);
        assert_eq!(serialize_among(&before("#[derive(Debug, Serialize, Encode)]")), Some("Serialize"));
        assert_eq!(serialize_among(&before("#[derive(rkyv::Serialize, Encode)]")), None);
    }
}
