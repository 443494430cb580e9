//! Checking a `#[channel]` impl: one `async fn join`, well-formed
//! `#[handle_in]` handlers with distinct, non-reserved events.

use std::collections::HashMap;

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, ReturnType, Signature, Type};

use super::parse::{ChannelArgs, ARGS_SYNTAX};
use crate::common::{unraw, Errors};

const JOIN_SYNTAX: &str = "`async fn join(topic: Topic, params: P, socket: &mut Socket<S>) -> Join<Self>`";
const HANDLER_SYNTAX: &str = "`async fn name(&mut self, payload: P, socket: &mut Socket<S>) -> Reply`";

/// Events the Phoenix protocol itself uses; a handler for one would never
/// be called.
pub(crate) const RESERVED_EVENTS: [&str; 6] =
    ["phx_join", "phx_leave", "phx_reply", "phx_close", "phx_error", "heartbeat"];

/// A checked channel impl.
pub(crate) struct Channel {
    pub(crate) krate: Option<syn::Path>,
    pub(crate) socket: Option<Type>,
    /// The impl block as written, minus the `#[handle_in]` attributes.
    pub(crate) item: ItemImpl,
    pub(crate) join: Option<Join>,
    pub(crate) handlers: Vec<Handler>,
    /// Methods that failed validation, referenced by the fallback impl so
    /// they do not add dead-code warnings to the errors.
    pub(crate) rejected: Vec<Ident>,
}

pub(crate) struct Join {
    pub(crate) params: Type,
    pub(crate) socket: bool,
    pub(crate) output_span: Span,
}

pub(crate) struct Handler {
    pub(crate) event: LitStr,
    pub(crate) method: Ident,
    pub(crate) payload: Type,
    pub(crate) socket: bool,
    pub(crate) output_span: Span,
}

/// The shape of a handler's arguments after the receiver.
struct Args {
    payload: Type,
    socket: bool,
}

pub(crate) fn validate(args: ChannelArgs, mut item: ItemImpl, errors: &mut Errors) -> Channel {
    if args.socket.is_none() {
        let span = args.span.unwrap_or_else(Span::call_site);
        errors.push(syn::Error::new(
            span,
            format!("`#[channel]` needs the socket that routes to this channel: {ARGS_SYNTAX}"),
        ));
    }
    let mut joins: Vec<(Ident, Option<Join>)> = Vec::new();
    let mut handlers: Vec<Handler> = Vec::new();
    let mut rejected = Vec::new();
    let mut seen: HashMap<String, Ident> = HashMap::new();

    for impl_item in &mut item.items {
        let handle_in = take_handle_in(impl_item);
        let ImplItem::Fn(f) = impl_item else {
            if let Some(attr) = handle_in.first() {
                errors.push_spanned(attr, "`#[handle_in]` goes on an `async fn` method of the channel");
            }
            continue;
        };
        if handle_in.is_empty() {
            if unraw(&f.sig.ident) == "join" {
                allow_unused_async(f);
                let join = check_join(f, errors);
                if join.is_none() && f.sig.generics.params.is_empty() {
                    rejected.push(f.sig.ident.clone());
                }
                joins.push((f.sig.ident.clone(), join));
            }
            continue;
        }
        let events: Vec<LitStr> = handle_in.iter().filter_map(|attr| errors.ok(parse_handle_in(attr))).collect();
        allow_unused_async(f);
        let args = check_handler(f, errors);
        let mut routed = false;
        for event in events {
            let name = event.value();
            if let Err(message) = check_event(&name) {
                errors.push_spanned(&event, message);
                continue;
            }
            if let Some(first) = seen.get(&name) {
                errors.push_spanned(
                    &event,
                    format!("two handlers for event {name:?}: `{first}` already handles it; remove one of them"),
                );
                continue;
            }
            seen.insert(name, f.sig.ident.clone());
            let Some(args) = &args else { continue };
            routed = true;
            handlers.push(Handler {
                event,
                method: f.sig.ident.clone(),
                payload: args.payload.clone(),
                socket: args.socket,
                output_span: output_span(&f.sig),
            });
        }
        if !routed && f.sig.generics.params.is_empty() {
            rejected.push(f.sig.ident.clone());
        }
    }

    let join = match joins.len() {
        0 => {
            errors.push_spanned(&item.self_ty, format!("a channel needs {JOIN_SYNTAX} in its `#[channel]` impl"));
            None
        }
        _ => joins.into_iter().next().and_then(|(_, join)| join),
    };
    Channel { krate: args.krate, socket: args.socket, item, join, handlers, rejected }
}

/// `join` and handlers must be `async` even when they do not await, so
/// `clippy::unused_async` does not apply to them.
fn allow_unused_async(f: &mut ImplItemFn) {
    f.attrs.push(syn::parse_quote!(#[allow(clippy::unused_async)]));
}

/// Removes and returns the `#[handle_in]` attributes of an impl item.
fn take_handle_in(item: &mut ImplItem) -> Vec<Attribute> {
    let attrs = match item {
        ImplItem::Fn(f) => &mut f.attrs,
        ImplItem::Const(c) => &mut c.attrs,
        ImplItem::Type(t) => &mut t.attrs,
        ImplItem::Macro(m) => &mut m.attrs,
        _ => return Vec::new(),
    };
    let (taken, kept) = std::mem::take(attrs).into_iter().partition(|a| a.path().is_ident("handle_in"));
    *attrs = kept;
    taken
}

/// The event of `#[handle_in("event")]`.
fn parse_handle_in(attr: &Attribute) -> syn::Result<LitStr> {
    let syntax = "expected `#[handle_in(\"event\")]`";
    let syn::Meta::List(list) = &attr.meta else {
        return Err(syn::Error::new_spanned(attr, format!("{syntax}: the event name is missing")));
    };
    if let Ok(lit) = list.parse_args::<LitStr>() {
        return Ok(lit);
    }
    let tokens = &list.tokens;
    let message = match syn::parse2::<syn::Expr>(tokens.clone()) {
        Ok(syn::Expr::Path(p)) if p.path.get_ident().is_some() => {
            format!("event names are string literals: write `#[handle_in(\"{tokens}\")]`")
        }
        _ if tokens.is_empty() => format!("{syntax}: the event name is missing"),
        _ => format!("{syntax}: the event name is one string literal"),
    };
    Err(if tokens.is_empty() {
        syn::Error::new_spanned(attr, message)
    } else {
        syn::Error::new_spanned(tokens, message)
    })
}

/// Checks an event name.
pub(crate) fn check_event(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the event name cannot be empty; name the event the client pushes, e.g. \"comment:add\"".to_owned());
    }
    if RESERVED_EVENTS.contains(&name) {
        return Err(format!(
            "{name:?} is reserved by the Phoenix protocol and never reaches a handler; pick another event name"
        ));
    }
    Ok(())
}

fn output_span(sig: &Signature) -> Span {
    match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    }
}

fn is_mut_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_some())
}

fn check_join(f: &ImplItemFn, errors: &mut Errors) -> Option<Join> {
    let sig = &f.sig;
    let mut ok = true;
    let mut fail = |tokens: &dyn ToTokens, message: String| {
        errors.push_spanned(tokens, message);
        ok = false;
    };
    if sig.asyncness.is_none() {
        fail(&sig.fn_token, format!("`join` must be an `async fn`: {JOIN_SYNTAX}"));
    }
    if !sig.generics.params.is_empty() {
        fail(&sig.generics, format!("`join` cannot be generic: {JOIN_SYNTAX}"));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        fail(receiver, format!("`join` creates the channel, so it takes no `self`: {JOIN_SYNTAX}"));
    }
    let typed: Vec<&syn::PatType> = typed_args(sig);
    let params = match typed.as_slice() {
        [_, params] | [_, params, _] => {
            if let Some(message) = payload_type_problem(&params.ty) {
                fail(&params.ty, message);
            }
            Some((*params.ty).clone())
        }
        [] | [_] => {
            let what = if typed.is_empty() { "no arguments" } else { "one argument" };
            fail(
                &sig.ident,
                format!(
                    "`join` takes the topic, the join params and optionally the socket, but has {what}: {JOIN_SYNTAX}"
                ),
            );
            None
        }
        [_, _, _, extra, ..] => {
            fail(extra, format!("`join` takes at most three arguments: {JOIN_SYNTAX}"));
            None
        }
    };
    let params = params?;
    ok.then(|| Join { params, socket: typed.len() == 3, output_span: output_span(sig) })
}

fn typed_args(sig: &Signature) -> Vec<&syn::PatType> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Why a type cannot be a payload argument, when that is clear from the
/// syntax alone.
fn payload_type_problem(ty: &Type) -> Option<String> {
    match ty {
        Type::ImplTrait(_) => {
            Some("a payload argument needs a concrete type, e.g. a `#[derive(Deserialize)]` struct or `Value`".into())
        }
        Type::Reference(_) => Some(
            "a payload argument is owned: take a `#[derive(Deserialize)]` struct, `Value` or `Payload`, not a reference"
                .into(),
        ),
        _ => None,
    }
}

fn check_handler(f: &ImplItemFn, errors: &mut Errors) -> Option<Args> {
    let sig = &f.sig;
    let name = &sig.ident;
    let mut ok = true;
    let mut fail = |tokens: &dyn ToTokens, message: String| {
        errors.push_spanned(tokens, message);
        ok = false;
    };
    if sig.asyncness.is_none() {
        fail(&sig.fn_token, format!("handlers must be `async fn`: write `async fn {name}(..)`"));
    }
    if !sig.generics.params.is_empty() {
        fail(&sig.generics, format!("handlers cannot be generic: {HANDLER_SYNTAX}"));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if !matches!(*receiver.ty, Type::Reference(_)) {
                fail(receiver, format!("handlers take `&mut self` or `&self`, not `self` by value: {HANDLER_SYNTAX}"));
            }
        }
        _ => fail(name, format!("handler `{name}` needs a `&mut self` (or `&self`) receiver: {HANDLER_SYNTAX}")),
    }
    let typed = typed_args(sig);
    let args = match typed.as_slice() {
        [] => {
            fail(
                name,
                format!(
                    "handler `{name}` needs a payload argument (use `_payload: Value` to ignore it): {HANDLER_SYNTAX}"
                ),
            );
            None
        }
        [only] if is_mut_ref(&only.ty) => {
            fail(
                only,
                format!("handler `{name}` needs a payload argument before the socket (use `_payload: Value` to ignore it): {HANDLER_SYNTAX}"),
            );
            None
        }
        [payload] => Some(Args { payload: (*payload.ty).clone(), socket: false }),
        [first, second] if is_mut_ref(&first.ty) && !is_mut_ref(&second.ty) => {
            fail(first, format!("the socket argument comes after the payload: {HANDLER_SYNTAX}"));
            None
        }
        [payload, _socket] => Some(Args { payload: (*payload.ty).clone(), socket: true }),
        [_, _, extra, ..] => {
            fail(extra, format!("handlers take the payload and optionally the socket, nothing more: {HANDLER_SYNTAX}"));
            None
        }
    };
    if let Some(args) = &args {
        if let Some(message) = payload_type_problem(&args.payload) {
            fail(&args.payload, message);
        }
    }
    if ok {
        args
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        assert_eq!(check_event("comment:add"), Ok(()));
        assert!(check_event("").unwrap_err().contains("cannot be empty"));
        for reserved in RESERVED_EVENTS {
            assert!(check_event(reserved).unwrap_err().contains("reserved"), "{reserved}");
        }
        assert_eq!(check_event("phx_custom"), Ok(()));
    }

    fn run(item: ItemImpl) -> (Channel, Option<String>) {
        let mut errors = Errors::default();
        let args = ChannelArgs { socket: Some(syn::parse_quote!(S)), ..ChannelArgs::default() };
        let channel = validate(args, item, &mut errors);
        (channel, errors.into_error().map(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
    }

    #[test]
    fn valid_channel() {
        let (channel, errors) = run(syn::parse_quote! {
            impl C {
                async fn join(t: Topic, p: Value, s: &mut Socket<S>) -> Join<Self> { todo!() }
                #[handle_in("a")]
                async fn a(&mut self, p: Value, s: &mut Socket<S>) -> Reply { todo!() }
                #[handle_in("b")]
                #[handle_in("c")]
                async fn b(&self, p: Payload) {}
                fn helper(&self) {}
            }
        });
        assert_eq!(errors, None);
        assert!(channel.join.as_ref().is_some_and(|j| j.socket));
        let events: Vec<_> = channel.handlers.iter().map(|h| (h.event.value(), h.socket)).collect();
        assert_eq!(events, [("a".into(), true), ("b".into(), false), ("c".into(), false)]);
        assert!(channel.item.items.iter().all(|i| match i {
            ImplItem::Fn(f) => f.attrs.iter().all(|a| !a.path().is_ident("handle_in")),
            _ => true,
        }));
    }

    #[test]
    fn every_mistake_is_reported() {
        let (_, errors) = run(syn::parse_quote! {
            impl C {
                #[handle_in("a")]
                fn sync(&mut self, p: Value) {}
                #[handle_in("a")]
                async fn dup(&mut self, p: Value) {}
                #[handle_in("a")]
                async fn dup2(&mut self, p: Value) {}
                #[handle_in("phx_join")]
                async fn reserved(&mut self, p: Value) {}
                #[handle_in(ping)]
                async fn ident(&mut self, p: Value) {}
                #[handle_in("x")]
                async fn no_self(p: Value) {}
            }
        });
        let errors = errors.unwrap();
        for expected in [
            "handlers must be `async fn`",
            "two handlers for event \"a\"",
            "reserved",
            "write `#[handle_in(\"ping\")]`",
            "needs a `&mut self`",
            "a channel needs `async fn join",
        ] {
            assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
        }
    }
}
