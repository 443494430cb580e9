//! Parsing `#[encode(only = [..])]`, `#[encode(except = [..])]` and
//! `#[encode(crate = path)]`.

use proc_macro2::{Ident, TokenTree};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Token};

use crate::common::{did_you_mean, Errors};

const KEYS: [&str; 3] = ["only", "except", "crate"];

/// A field list: the key as written and the names in it.
pub(crate) struct FieldList {
    pub(crate) key: Ident,
    pub(crate) fields: Vec<Ident>,
    /// The `[..]`, where an empty list is reported.
    pub(crate) brackets: proc_macro2::Span,
}

/// Everything the `#[encode]` attributes say.
#[derive(Default)]
pub(crate) struct EncodeArgs {
    pub(crate) only: Option<FieldList>,
    pub(crate) except: Option<FieldList>,
    pub(crate) krate: Option<syn::Path>,
}

/// Parses every `#[encode(..)]` attribute, recording malformed ones.
pub(crate) fn parse_attrs(attrs: &[Attribute], errors: &mut Errors) -> EncodeArgs {
    let mut args = EncodeArgs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("encode")) {
        let syn::Meta::List(_) = &attr.meta else {
            errors.push_spanned(attr, "expected `#[encode(only = [field, ..])]` or `#[encode(except = [field, ..])]`");
            continue;
        };
        if let Err(error) = attr.parse_args_with(|input: ParseStream| parse_args(input, &mut args, errors)) {
            errors.push(error);
        }
    }
    args
}

fn parse_args(input: ParseStream, args: &mut EncodeArgs, errors: &mut Errors) -> syn::Result<()> {
    while !input.is_empty() {
        let key = Ident::parse_any(input)?;
        let name = key.to_string();
        if !KEYS.contains(&name.as_str()) {
            errors.push_spanned(
                &key,
                format!(
                    "unknown key `{name}` in `#[encode]`: the valid keys are `only`, `except` and `crate`{}",
                    did_you_mean(&name, KEYS)
                ),
            );
            while !input.is_empty() && !input.peek(Token![,]) {
                input.parse::<TokenTree>()?;
            }
        } else {
            if !input.peek(Token![=]) {
                return Err(input.error(format!("expected `=` after `{name}`, as in `#[encode({name} = [field])]`")));
            }
            input.parse::<Token![=]>()?;
            if name == "crate" {
                let path = input.call(syn::Path::parse_mod_style)?;
                if args.krate.replace(path).is_some() {
                    errors.push_spanned(&key, "`crate` is given twice");
                }
            } else {
                let (brackets, fields) = parse_list(input, &name)?;
                let slot = if name == "only" { &mut args.only } else { &mut args.except };
                if slot.is_some() {
                    errors.push_spanned(
                        &key,
                        format!("`{name}` is given twice; list every field in one `{name} = [..]`"),
                    );
                } else {
                    *slot = Some(FieldList { key, fields, brackets });
                }
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

/// `[a, b, r#type]`.
fn parse_list(input: ParseStream, key: &str) -> syn::Result<(proc_macro2::Span, Vec<Ident>)> {
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
