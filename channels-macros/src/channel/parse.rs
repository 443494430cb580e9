//! Parsing `#[channel(..)]`'s arguments and the item it is attached to.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, Item, ItemImpl, LitStr, Token, Type};

use crate::common::{did_you_mean, Errors};

pub(crate) const ARGS_SYNTAX: &str = "`#[channel(socket = YourSocket)]`";
const KEYS: [&str; 5] = ["socket", "intercept", "out", "history", "crate"];
const OUT_SYNTAX: &str = "`out = [\"comments:*:new\" => NewComment]`";
pub(crate) const HISTORY_SYNTAX: &str = "`history` or `history(size = 100, age = \"5m\", max_bytes = 1048576)`";
pub(crate) const HISTORY_KEYS: [&str; 3] = ["size", "age", "max_bytes"];

/// `#[channel(socket = S, intercept = ["event", ..], crate = path)]`.
#[derive(Default)]
pub(crate) struct ChannelArgs {
    pub(crate) socket: Option<Type>,
    pub(crate) krate: Option<syn::Path>,
    /// The `intercept` list, if given.
    pub(crate) intercept: Option<Vec<LitStr>>,
    /// The `out` list of pushed events and their payload types, if given.
    pub(crate) out: Option<Vec<OutEvent>>,
    /// `history` or `history(..)`, if given.
    pub(crate) history: Option<HistoryArgs>,
    /// Where the arguments were written, for "missing `socket`".
    pub(crate) span: Option<Span>,
}

/// `history(size = .., age = "..", max_bytes = ..)`: the bounds as written,
/// each `key = literal` (checked in validation).
pub(crate) struct HistoryArgs {
    /// The `history` keyword, for errors about the whole.
    pub(crate) keyword: Ident,
    pub(crate) entries: Vec<(Ident, syn::Lit)>,
}

impl HistoryArgs {
    fn parse(keyword: Ident, input: ParseStream) -> syn::Result<Self> {
        let mut entries = Vec::new();
        if !input.peek(syn::token::Paren) {
            return Ok(HistoryArgs { keyword, entries });
        }
        let list;
        syn::parenthesized!(list in input);
        while !list.is_empty() {
            let key = Ident::parse_any(&list).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected `key = value` inside `history(..)`, as in {HISTORY_SYNTAX}"),
                )
            })?;
            if !list.peek(Token![=]) {
                return Err(list.error(format!("expected `=` after `{key}`, as in {HISTORY_SYNTAX}")));
            }
            list.parse::<Token![=]>()?;
            let value: syn::Lit = list
                .parse()
                .map_err(|e| syn::Error::new(e.span(), format!("`{key}` takes a literal, as in {HISTORY_SYNTAX}")))?;
            entries.push((key, value));
            if !list.is_empty() {
                list.parse::<Token![,]>()?;
            }
        }
        Ok(HistoryArgs { keyword, entries })
    }
}

/// `"event" => Type` in `out = [..]`.
pub(crate) struct OutEvent {
    pub(crate) event: LitStr,
    pub(crate) ty: Type,
}

impl syn::parse::Parse for OutEvent {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let event: LitStr = input.parse().map_err(|e| {
            syn::Error::new(e.span(), format!("expected an event name and its payload type, as in {OUT_SYNTAX}"))
        })?;
        if !input.peek(Token![=>]) {
            return Err(
                input.error(format!("expected `=>` and the payload type after the event name, as in {OUT_SYNTAX}"))
            );
        }
        input.parse::<Token![=>]>()?;
        let ty: Type = input.parse()?;
        Ok(OutEvent { event, ty })
    }
}

pub(crate) fn parse_args(args: TokenStream, errors: &mut Errors) -> ChannelArgs {
    let span = args.clone().into_iter().next().map(|tt| tt.span());
    let mut out = ChannelArgs { span, ..ChannelArgs::default() };
    let parser = |input: ParseStream| {
        while !input.is_empty() {
            let key = Ident::parse_any(input)
                .map_err(|e| syn::Error::new(e.span(), format!("expected `key = value`, as in {ARGS_SYNTAX}")))?;
            let name = key.to_string();
            if !KEYS.contains(&name.as_str()) {
                errors.push_spanned(
                    &key,
                    format!(
                        "unknown key `{name}` in `#[channel]`: the valid keys are `socket` (required), `intercept`, `out`, `history` and `crate`{}",
                        did_you_mean(&name, KEYS)
                    ),
                );
                skip_value(input)?;
                continue;
            }
            if name == "history" {
                let history = HistoryArgs::parse(key.clone(), input)?;
                if out.history.is_some() {
                    errors.push_spanned(&key, "`history` is given twice");
                } else {
                    out.history = Some(history);
                }
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
                continue;
            }
            if !input.peek(Token![=]) {
                return Err(input.error(format!("expected `=` after `{name}`, as in {ARGS_SYNTAX}")));
            }
            input.parse::<Token![=]>()?;
            if name == "socket" {
                let ty: Type = input.parse()?;
                if out.socket.is_some() {
                    errors.push_spanned(&key, "`socket` is given twice");
                }
                out.socket = Some(ty);
            } else if name == "intercept" {
                if !input.peek(syn::token::Bracket) {
                    return Err(input.error(
                        "`intercept` takes a list of event names in brackets, as in `intercept = [\"comment:new\"]`",
                    ));
                }
                let list;
                syn::bracketed!(list in input);
                let events = Punctuated::<LitStr, Token![,]>::parse_terminated(&list).map_err(|e| {
                    syn::Error::new(e.span(), "expected a list of event names, as in `intercept = [\"comment:new\"]`")
                })?;
                if out.intercept.is_some() {
                    errors.push_spanned(&key, "`intercept` is given twice");
                }
                out.intercept = Some(events.into_iter().collect());
            } else if name == "out" {
                if !input.peek(syn::token::Bracket) {
                    return Err(input.error(format!(
                        "`out` takes a list of the events the channel pushes and their payload types in brackets, as in {OUT_SYNTAX}"
                    )));
                }
                let list;
                syn::bracketed!(list in input);
                let events = Punctuated::<OutEvent, Token![,]>::parse_terminated(&list)?;
                // The first list is the one checked, so its mistakes are
                // reported too.
                if out.out.is_some() {
                    errors.push_spanned(&key, "`out` is given twice");
                } else {
                    out.out = Some(events.into_iter().collect());
                }
            } else {
                let path = input.call(syn::Path::parse_mod_style)?;
                if out.krate.is_some() {
                    errors.push_spanned(&key, "`crate` is given twice");
                }
                out.krate = Some(path);
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    out
}

/// Skips an unknown key's `= value` up to and including the next comma.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() {
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            break;
        }
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// The inherent impl `#[channel]` is attached to, or the item back with
/// an error saying where `#[channel]` goes.
pub(crate) fn into_inherent_impl(item: Item) -> Result<ItemImpl, Box<(Item, syn::Error)>> {
    const WHERE: &str = "`#[channel(socket = ..)]` goes on the inherent impl block of the channel's type, \
                         e.g. `#[channel(socket = UserSocket)] impl CommentsChannel { async fn join(..) .. }`";
    let error = |tokens: &dyn ToTokens, what: &str| syn::Error::new_spanned(tokens, format!("{what}; {WHERE}"));
    match item {
        Item::Impl(imp) => match &imp.trait_ {
            Some((_, path, _)) => {
                let error = error(path, "`#[channel]` cannot be used on a trait impl; it implements `Channel` itself");
                Err(Box::new((Item::Impl(imp), error)))
            }
            None => Ok(imp),
        },
        Item::Struct(s) => {
            let error = error(&s.struct_token, "`#[channel]` cannot be used on a struct");
            Err(Box::new((Item::Struct(s), error)))
        }
        Item::Enum(e) => {
            let error = error(&e.enum_token, "`#[channel]` cannot be used on an enum");
            Err(Box::new((Item::Enum(e), error)))
        }
        Item::Fn(f) => {
            let error = error(&f.sig.fn_token, "`#[channel]` cannot be used on a function");
            Err(Box::new((Item::Fn(f), error)))
        }
        other => {
            let error = syn::Error::new(Span::call_site(), format!("`#[channel]` cannot be used here; {WHERE}"));
            Err(Box::new((other, error)))
        }
    }
}
