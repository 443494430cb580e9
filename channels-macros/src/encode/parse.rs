//! Parsing `#[encode(..)]` on the struct (`only = [..]`, `except = [..]`,
//! `rename_all = ".."`, `skip_none`, `crate = path`) and on its fields
//! (`rename = ".."`, `skip_none`). The removed `impl_serialize = ..` is
//! recognized to say what to do instead.

use proc_macro2::{Ident, Span, TokenTree};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, LitStr, Token};

use super::case::{RenameRule, RULES};
use crate::common::{did_you_mean, Errors};

const STRUCT_KEYS: [&str; 5] = ["only", "except", "rename_all", "skip_none", "crate"];
const FIELD_KEYS: [&str; 2] = ["rename", "skip_none"];

/// A field list: the key as written and the names in it.
pub(crate) struct FieldList {
    pub(crate) key: Ident,
    pub(crate) fields: Vec<Ident>,
    /// The `[..]`, where an empty list is reported.
    pub(crate) brackets: Span,
}

/// Everything the struct's `#[encode]` attributes say, and its fields'.
#[derive(Default)]
pub(crate) struct EncodeArgs {
    pub(crate) only: Option<FieldList>,
    pub(crate) except: Option<FieldList>,
    /// The rule and the string it was spelled as.
    pub(crate) rename_all: Option<(RenameRule, LitStr)>,
    /// The `skip_none` key, where it is given.
    pub(crate) skip_none: Option<Ident>,
    pub(crate) krate: Option<syn::Path>,
    /// One per field of the struct, in declaration order (none for enums
    /// and unions).
    pub(crate) fields: Vec<FieldArgs>,
}

/// What a field's `#[encode]` attributes say.
#[derive(Default)]
pub(crate) struct FieldArgs {
    pub(crate) rename: Option<LitStr>,
    /// The `skip_none` key, where it is given.
    pub(crate) skip_none: Option<Ident>,
}

/// Where an `#[encode]` attribute is.
#[derive(Clone, Copy, PartialEq)]
enum On {
    Struct,
    Field,
}

/// Parses every `#[encode(..)]` attribute of the struct and its fields,
/// recording malformed ones.
pub(crate) fn parse(input: &DeriveInput, errors: &mut Errors) -> EncodeArgs {
    let mut args = parse_attrs(&input.attrs, errors);
    if let Data::Struct(s) = &input.data {
        args.fields = s.fields.iter().map(|field| parse_field_attrs(&field.attrs, errors)).collect();
    }
    args
}

/// Parses the struct's `#[encode(..)]` attributes.
fn parse_attrs(attrs: &[Attribute], errors: &mut Errors) -> EncodeArgs {
    let mut args = EncodeArgs::default();
    for attr in encode_attrs(attrs, On::Struct, errors) {
        if let Err(error) = attr.parse_args_with(|input: ParseStream| parse_struct_args(input, &mut args, errors)) {
            errors.push(error);
        }
    }
    args
}

fn parse_field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldArgs {
    let mut args = FieldArgs::default();
    for attr in encode_attrs(attrs, On::Field, errors) {
        if let Err(error) = attr.parse_args_with(|input: ParseStream| parse_field_args(input, &mut args, errors)) {
            errors.push(error);
        }
    }
    args
}

/// The `#[encode(..)]` attributes, reporting `#[encode]` and
/// `#[encode = ..]`.
fn encode_attrs<'a>(attrs: &'a [Attribute], on: On, errors: &mut Errors) -> Vec<&'a Attribute> {
    let mut lists = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("encode")) {
        if let syn::Meta::List(_) = &attr.meta {
            lists.push(attr);
        } else {
            let expected = match on {
                On::Struct => "expected `#[encode(only = [field, ..])]` or `#[encode(except = [field, ..])]`",
                On::Field => "expected `#[encode(rename = \"name\")]` or `#[encode(skip_none)]`",
            };
            errors.push_spanned(attr, expected);
        }
    }
    lists
}

fn parse_struct_args(input: ParseStream, args: &mut EncodeArgs, errors: &mut Errors) -> syn::Result<()> {
    parse_keys(input, On::Struct, errors, |key, name, input, errors| {
        match name {
            "crate" => {
                let path = value(input, name, "channels")?.call(syn::Path::parse_mod_style)?;
                set(&mut args.krate, path, key, errors);
            }
            "rename_all" => {
                let lit: LitStr = string(input, name, "camelCase")?;
                match RenameRule::from_name(&lit.value()) {
                    Some(rule) => set(&mut args.rename_all, (rule, lit), key, errors),
                    None => errors.push_spanned(&lit, unknown_rule(&lit.value())),
                }
            }
            "skip_none" => {
                flag(input, name)?;
                set(&mut args.skip_none, key.clone(), key, errors);
            }
            _ => {
                let (brackets, fields) = parse_list(value(input, name, "[field]")?, name)?;
                let slot = if name == "only" { &mut args.only } else { &mut args.except };
                if slot.is_some() {
                    errors
                        .push_spanned(key, format!("`{name}` is given twice; list every field in one `{name} = [..]`"));
                } else {
                    *slot = Some(FieldList { key: key.clone(), fields, brackets });
                }
            }
        }
        Ok(())
    })
}

fn parse_field_args(input: ParseStream, args: &mut FieldArgs, errors: &mut Errors) -> syn::Result<()> {
    parse_keys(input, On::Field, errors, |key, name, input, errors| {
        if name == "rename" {
            let lit = string(input, name, "userId")?;
            set(&mut args.rename, lit, key, errors);
        } else {
            flag(input, name)?;
            set(&mut args.skip_none, key.clone(), key, errors);
        }
        Ok(())
    })
}

/// Comma-separated `key`, `key = value`: `each` parses the rest of a valid
/// key; an unknown key (or one that belongs on the other level) is recorded
/// and skipped, so the keys after it are still checked.
fn parse_keys(
    input: ParseStream,
    on: On,
    errors: &mut Errors,
    mut each: impl FnMut(&Ident, &str, ParseStream, &mut Errors) -> syn::Result<()>,
) -> syn::Result<()> {
    let (valid, other) = match on {
        On::Struct => (&STRUCT_KEYS[..], &FIELD_KEYS[..]),
        On::Field => (&FIELD_KEYS[..], &STRUCT_KEYS[..]),
    };
    while !input.is_empty() {
        let key = Ident::parse_any(input)?;
        let name = key.to_string();
        if on == On::Struct && name == "impl_serialize" {
            errors.push_spanned(&key, IMPL_SERIALIZE_GONE);
            while !input.is_empty() && !input.peek(Token![,]) {
                input.parse::<TokenTree>()?;
            }
        } else if valid.contains(&name.as_str()) {
            each(&key, &name, input, errors)?;
        } else {
            let message = if other.contains(&name.as_str()) {
                misplaced(&name, on)
            } else {
                let (level, list) = match on {
                    On::Struct => {
                        ("the struct's `#[encode]`", "`only`, `except`, `rename_all`, `skip_none` and `crate`")
                    }
                    On::Field => ("a field's `#[encode]`", "`rename` and `skip_none`"),
                };
                format!(
                    "unknown key `{name}` in {level}: the valid keys are {list}{}",
                    did_you_mean(&name, valid.iter().copied())
                )
            };
            errors.push_spanned(&key, message);
            while !input.is_empty() && !input.peek(Token![,]) {
                input.parse::<TokenTree>()?;
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

/// The error for `impl_serialize = ..`, which is gone.
pub(crate) const IMPL_SERIALIZE_GONE: &str = "`impl_serialize` is gone: `#[derive(Encode)]` always implements \
     `serde::Serialize` with the chosen fields, so the one shape a type has is the one channels send. Remove \
     `impl_serialize` and the type's other `Serialize` (its `#[derive(serde::Serialize)]` or `impl Serialize`); \
     for a REST shape with other fields, serialize a separate view type (see \"A REST shape beside the channel \
     shape\" in docs/macros.md)";

/// The error for a key given at the wrong level.
fn misplaced(name: &str, on: On) -> String {
    match (on, name) {
        (On::Struct, "rename") => {
            "`rename` goes on a field: `#[encode(rename = \"userId\")]`; on the struct, `rename_all = \"camelCase\"` renames every field".to_owned()
        }
        (On::Struct, _) => format!("`{name}` goes on a field, not on the struct"),
        (On::Field, _) => format!("`{name}` goes on the struct's `#[encode(..)]`, not on a field"),
    }
}

/// Stores `value` in `slot`, reporting a key given twice.
fn set<T>(slot: &mut Option<T>, value: T, key: &Ident, errors: &mut Errors) {
    if slot.is_some() {
        errors.push_spanned(key, format!("`{key}` is given twice"));
    } else {
        *slot = Some(value);
    }
}

/// Consumes the `=` after `key`.
fn value<'a>(input: ParseStream<'a>, key: &str, example: &str) -> syn::Result<ParseStream<'a>> {
    if !input.peek(Token![=]) {
        return Err(input.error(format!("expected `=` after `{key}`, as in `#[encode({key} = {example})]`")));
    }
    input.parse::<Token![=]>()?;
    Ok(input)
}

/// `= "string"` after `key`.
fn string(input: ParseStream, key: &str, example: &str) -> syn::Result<LitStr> {
    let input = value(input, key, &format!("\"{example}\""))?;
    if !input.peek(LitStr) {
        return Err(input.error(format!("expected a string, as in `{key} = \"{example}\"`")));
    }
    input.parse()
}

/// A key that takes no value.
fn flag(input: ParseStream, key: &str) -> syn::Result<()> {
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        return Err(input.error(format!("`{key}` takes no value: write `#[encode({key})]`")));
    }
    Ok(())
}

/// The error for `rename_all = "unknown"`.
fn unknown_rule(unknown: &str) -> String {
    let rules: Vec<String> = RULES.iter().map(|(name, _)| format!("\"{name}\"")).collect();
    format!(
        "unknown `rename_all` rule {unknown:?}: the rules are {}{}",
        rules.join(", "),
        did_you_mean(unknown, RULES.iter().map(|(name, _)| *name))
    )
}

/// `[a, b, r#type]`.
fn parse_list(input: ParseStream, key: &str) -> syn::Result<(Span, Vec<Ident>)> {
    if !input.peek(syn::token::Bracket) {
        let hint = match input.fork().call(Ident::parse_any) {
            Ok(ident) => format!("write `{key} = [{ident}]`"),
            Err(_) => format!("write `{key} = [field, ..]`"),
        };
        return Err(input.error(format!("expected a bracketed list of field names; {hint}")));
    }
    let content;
    let brackets = syn::bracketed!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
    Ok((brackets.span.join(), list.into_iter().collect()))
}
