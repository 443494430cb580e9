//! Checking a `#[channel]` impl: one `join`, well-formed handlers
//! (`#[handle_in("event")]`, `#[handle_out("event")]`, `#[handle_info]`)
//! with distinct, non-reserved events, and an optional `terminate`.

use std::collections::HashMap;

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, ReturnType, Signature, Type};

use super::parse::{ChannelArgs, HistoryArgs, OutEvent, ARGS_SYNTAX, HISTORY_KEYS, HISTORY_SYNTAX};
use crate::common::{did_you_mean, unraw, Errors};

const JOIN_SYNTAX: &str = "`async fn join(topic: Topic, params: P, socket: &mut Socket<S>) -> Join<Self>`";
const HANDLER_SYNTAX: &str = "`async fn name(&mut self, payload: P, socket: &mut Socket<S>) -> Reply`";
const TERMINATE_SYNTAX: &str = "`async fn terminate(&mut self, reason: &Terminate, socket: &mut Socket<S>)`";

/// The attributes that make a method a handler.
const HANDLER_ATTRS: [&str; 3] = ["handle_in", "handle_out", "handle_info"];

/// Events the Phoenix protocol itself uses; a handler for one would never
/// be called.
pub(crate) const RESERVED_EVENTS: [&str; 6] =
    ["phx_join", "phx_leave", "phx_reply", "phx_close", "phx_error", "heartbeat"];

/// A checked channel impl.
pub(crate) struct Channel {
    pub(crate) krate: Option<syn::Path>,
    pub(crate) socket: Option<Type>,
    /// The impl block as written, minus the handler attributes.
    pub(crate) item: ItemImpl,
    pub(crate) join: Option<Join>,
    pub(crate) handlers: Vec<Handler>,
    pub(crate) intercepts: Vec<LitStr>,
    /// The declared pushed events (`out = [..]`), if declared.
    pub(crate) out: Option<Vec<OutEvent>>,
    /// The history its topics keep (`history(..)`), if declared.
    pub(crate) history: Option<History>,
    pub(crate) terminate: Option<Terminate>,
    /// Methods that failed validation, referenced by the fallback impl so
    /// they do not add dead-code warnings to the errors.
    pub(crate) rejected: Vec<Ident>,
}

pub(crate) struct Join {
    pub(crate) params: Type,
    pub(crate) socket: bool,
    pub(crate) is_async: bool,
    pub(crate) output_span: Span,
    /// The return type, where the generated types can read it.
    pub(crate) output: Option<Type>,
}

/// What a handler answers.
pub(crate) enum Kind {
    /// A client event.
    In(LitStr),
    /// An intercepted broadcast.
    Out(LitStr),
    /// A message from another task, selected by its type.
    Info,
}

pub(crate) struct Handler {
    pub(crate) kind: Kind,
    pub(crate) method: Ident,
    pub(crate) payload: Type,
    pub(crate) socket: bool,
    pub(crate) is_async: bool,
    pub(crate) output_span: Span,
    /// The return type, where the generated types can read it.
    pub(crate) output: Option<Type>,
}

/// Checked `history(..)` bounds; `None` fields take the runtime's defaults.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct History {
    pub(crate) size: Option<u64>,
    /// In milliseconds.
    pub(crate) age: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
}

pub(crate) struct Terminate {
    pub(crate) method: Ident,
    pub(crate) socket: bool,
    pub(crate) is_async: bool,
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
    let intercepts = check_intercepts(args.intercept.unwrap_or_default(), errors);
    let out = args.out.map(|events| check_out(events, errors));
    let history = args.history.map(|history| check_history(history, errors));
    let mut joins: Vec<(Ident, Option<Join>)> = Vec::new();
    let mut terminate = None;
    let mut handlers: Vec<Handler> = Vec::new();
    let mut rejected = Vec::new();
    let mut seen_in: HashMap<String, Ident> = HashMap::new();
    let mut seen_out: HashMap<String, Ident> = HashMap::new();
    let mut seen_info: HashMap<String, Ident> = HashMap::new();

    for impl_item in &mut item.items {
        let attrs = take_handler_attrs(impl_item);
        let ImplItem::Fn(f) = impl_item else {
            if let Some(attr) = attrs.first() {
                let name = attr.path().to_token_stream();
                errors.push_spanned(attr, format!("`#[{name}]` goes on a method of the channel"));
            }
            continue;
        };
        if attrs.is_empty() {
            match unraw(&f.sig.ident).as_str() {
                "join" => {
                    super::join_response::check(f, errors);
                    let join = check_join(f, errors);
                    if join.is_none() && f.sig.generics.params.is_empty() {
                        rejected.push(f.sig.ident.clone());
                    }
                    joins.push((f.sig.ident.clone(), join));
                }
                "terminate" => {
                    terminate = check_terminate(f, errors);
                    if terminate.is_none() && f.sig.generics.params.is_empty() {
                        rejected.push(f.sig.ident.clone());
                    }
                }
                _ => {}
            }
            continue;
        }
        let kinds: Vec<Kind> = attrs.iter().filter_map(|attr| errors.ok(parse_handler_attr(attr))).collect();
        let args = check_handler(f, errors);
        let mut routed = false;
        for kind in kinds {
            let method = f.sig.ident.clone();
            let accepted = match &kind {
                Kind::In(event) => check_routed_event(event, "handles", &mut seen_in, &method, errors),
                Kind::Out(event) => {
                    let intercepted = intercepts.iter().any(|i| i.value() == event.value());
                    if !intercepted {
                        errors.push_spanned(
                            event,
                            format!(
                                "`handle_out` only sees intercepted events: add {:?} to `intercept = [..]` in `#[channel(..)]`",
                                event.value()
                            ),
                        );
                    }
                    intercepted && check_routed_event(event, "handles the outgoing", &mut seen_out, &method, errors)
                }
                Kind::Info => match &args {
                    Some(args) => {
                        let ty = args.payload.to_token_stream().to_string();
                        match seen_info.get(&ty) {
                            Some(first) => {
                                errors.push_spanned(
                                    &args.payload,
                                    format!("two `handle_info` methods take `{ty}`: `{first}` already does; remove one of them"),
                                );
                                false
                            }
                            None => {
                                seen_info.insert(ty, method.clone());
                                true
                            }
                        }
                    }
                    None => false,
                },
            };
            let Some(args) = &args else { continue };
            if !accepted {
                continue;
            }
            routed = true;
            handlers.push(Handler {
                kind,
                method,
                payload: args.payload.clone(),
                socket: args.socket,
                is_async: f.sig.asyncness.is_some(),
                output_span: output_span(&f.sig),
                output: readable_output(&f.sig),
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
    Channel {
        krate: args.krate,
        socket: args.socket,
        item,
        join,
        handlers,
        intercepts,
        out,
        history,
        terminate,
        rejected,
    }
}

/// Checks an event of `#[handle_in]` or `#[handle_out]` and records it.
fn check_routed_event(
    event: &LitStr,
    verb: &str,
    seen: &mut HashMap<String, Ident>,
    method: &Ident,
    errors: &mut Errors,
) -> bool {
    let name = event.value();
    if let Err(message) = check_event(&name) {
        errors.push_spanned(event, message);
        return false;
    }
    if let Some(first) = seen.get(&name) {
        errors.push_spanned(
            event,
            format!("two handlers for event {name:?}: `{first}` already {verb} it; remove one of them"),
        );
        return false;
    }
    seen.insert(name, method.clone());
    true
}

/// The `intercept` list: valid, distinct event names.
fn check_intercepts(events: Vec<LitStr>, errors: &mut Errors) -> Vec<LitStr> {
    let mut kept: Vec<LitStr> = Vec::new();
    for event in events {
        if let Err(message) = check_event(&event.value()) {
            errors.push_spanned(&event, message);
        } else if kept.iter().any(|k| k.value() == event.value()) {
            errors.push_spanned(&event, format!("{:?} is listed twice in `intercept`", event.value()));
        } else {
            kept.push(event);
        }
    }
    kept
}

/// The `out` list: valid, distinct event names.
fn check_out(events: Vec<OutEvent>, errors: &mut Errors) -> Vec<OutEvent> {
    let mut kept: Vec<OutEvent> = Vec::new();
    for out in events {
        let name = out.event.value();
        if name.is_empty() {
            errors.push_spanned(
                &out.event,
                "the event name cannot be empty; name the event the channel pushes, e.g. \"comments:*:new\"",
            );
        } else if let Err(message) = check_event(&name) {
            errors.push_spanned(&out.event, message);
        } else if kept.iter().any(|k| k.event.value() == name) {
            errors.push_spanned(&out.event, format!("{name:?} is listed twice in `out`; list each pushed event once"));
        } else {
            kept.push(out);
        }
    }
    kept
}

/// `history(..)`: known keys, each once; a positive size and byte bound;
/// an age such as `"300s"`, `"5m"`, `"2h"` or `"1d"`.
fn check_history(args: HistoryArgs, errors: &mut Errors) -> History {
    let mut history = History { size: None, age: None, max_bytes: None };
    // Keys seen so far, valid or not: a key given twice is reported even
    // when its first value was refused.
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in args.entries {
        let name = unraw(&key);
        let slot = match name.as_str() {
            "size" => &mut history.size,
            "age" => &mut history.age,
            "max_bytes" => &mut history.max_bytes,
            _ => {
                errors.push_spanned(
                    &key,
                    format!(
                        "unknown key `{name}` in `history(..)`: the keys are `size`, `age` and `max_bytes`{}",
                        did_you_mean(&name, HISTORY_KEYS)
                    ),
                );
                continue;
            }
        };
        if seen.contains(&name) {
            errors.push_spanned(&key, format!("`{name}` is given twice in `history(..)`"));
            continue;
        }
        seen.push(name.clone());
        let parsed = match (name.as_str(), &value) {
            ("age", syn::Lit::Str(text)) => parse_age(&text.value()).ok_or_else(|| {
                format!(
                    "{:?} is not an age: write a number and a unit, as in \"300s\", \"5m\", \"2h\" or \"1d\"",
                    text.value()
                )
            }),
            ("age", _) => {
                Err("`age` is a string such as \"5m\" (a number and one of `ms`, `s`, `m`, `h`, `d`)".to_owned())
            }
            (_, syn::Lit::Int(int)) => match int.base10_parse::<u64>() {
                Ok(0) => Err(format!("`{name}` must be at least 1")),
                Ok(n) => Ok(n),
                Err(_) => Err(format!("`{name}` must be a whole number below 2^64")),
            },
            _ => Err(format!("`{name}` is a whole number, as in {HISTORY_SYNTAX}")),
        };
        match parsed {
            Ok(n) => *slot = Some(n),
            Err(message) => errors.push_spanned(&value, message),
        }
    }
    let _ = args.keyword;
    history
}

/// `"300s"`, `"5m"`, `"2h"`, `"1d"`, `"250ms"` in milliseconds (at least 1,
/// at most 24 days, what the runtime keeps).
fn parse_age(text: &str) -> Option<u64> {
    let digits = text.trim().bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.trim().split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let ms = number.checked_mul(unit_ms)?;
    (1..=24 * 86_400_000).contains(&ms).then_some(ms)
}

/// The return type as the generated types read it: `()` when there is
/// none, `None` when it names a type a function body cannot (`impl Trait`,
/// `_`), which leaves the replies untyped.
fn readable_output(sig: &Signature) -> Option<Type> {
    struct Unnameable(bool);
    impl<'ast> syn::visit::Visit<'ast> for Unnameable {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
        fn visit_type_infer(&mut self, _: &'ast syn::TypeInfer) {
            self.0 = true;
        }
    }
    match &sig.output {
        ReturnType::Default => Some(syn::parse_quote!(())),
        ReturnType::Type(_, ty) => {
            let mut check = Unnameable(false);
            syn::visit::Visit::visit_type(&mut check, ty);
            (!check.0).then(|| (**ty).clone())
        }
    }
}

/// Removes and returns the handler attributes of an impl item.
fn take_handler_attrs(item: &mut ImplItem) -> Vec<Attribute> {
    let attrs = match item {
        ImplItem::Fn(f) => &mut f.attrs,
        ImplItem::Const(c) => &mut c.attrs,
        ImplItem::Type(t) => &mut t.attrs,
        ImplItem::Macro(m) => &mut m.attrs,
        _ => return Vec::new(),
    };
    let (taken, kept) =
        std::mem::take(attrs).into_iter().partition(|a| HANDLER_ATTRS.iter().any(|h| a.path().is_ident(h)));
    *attrs = kept;
    taken
}

/// What a handler attribute says.
fn parse_handler_attr(attr: &Attribute) -> syn::Result<Kind> {
    if attr.path().is_ident("handle_info") {
        return match &attr.meta {
            syn::Meta::Path(_) => Ok(Kind::Info),
            _ => Err(syn::Error::new_spanned(
                attr,
                "`#[handle_info]` takes no arguments: the message type is the method's argument type",
            )),
        };
    }
    let event = parse_event_attr(attr)?;
    Ok(if attr.path().is_ident("handle_out") { Kind::Out(event) } else { Kind::In(event) })
}

/// The event of `#[handle_in("event")]` or `#[handle_out("event")]`.
fn parse_event_attr(attr: &Attribute) -> syn::Result<LitStr> {
    let name = attr.path().to_token_stream();
    let syntax = format!("expected `#[{name}(\"event\")]`");
    let syn::Meta::List(list) = &attr.meta else {
        return Err(syn::Error::new_spanned(attr, format!("{syntax}: the event name is missing")));
    };
    if let Ok(lit) = list.parse_args::<LitStr>() {
        return Ok(lit);
    }
    let tokens = &list.tokens;
    let message = match syn::parse2::<syn::Expr>(tokens.clone()) {
        Ok(syn::Expr::Path(p)) if p.path.get_ident().is_some() => {
            format!("event names are string literals: write `#[{name}(\"{tokens}\")]`")
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
    let mut check = Findings::new(errors);
    if !sig.generics.params.is_empty() {
        check.fail(&sig.generics, format!("`join` cannot be generic: {JOIN_SYNTAX}"));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        check.fail(receiver, format!("`join` creates the channel, so it takes no `self`: {JOIN_SYNTAX}"));
    }
    let typed: Vec<&syn::PatType> = typed_args(sig);
    let params = match typed.as_slice() {
        [_, params] | [_, params, _] => {
            if let Some(message) = payload_type_problem(&params.ty) {
                check.fail(&params.ty, message);
            }
            Some((*params.ty).clone())
        }
        [] | [_] => {
            let what = if typed.is_empty() { "no arguments" } else { "one argument" };
            check.fail(
                &sig.ident,
                format!(
                    "`join` takes the topic, the join params and optionally the socket, but has {what}: {JOIN_SYNTAX}"
                ),
            );
            None
        }
        [_, _, _, extra, ..] => {
            check.fail(extra, format!("`join` takes at most three arguments: {JOIN_SYNTAX}"));
            None
        }
    };
    let params = params?;
    check.ok.then(|| Join {
        params,
        socket: typed.len() == 3,
        is_async: sig.asyncness.is_some(),
        output_span: output_span(sig),
        output: readable_output(sig),
    })
}

fn check_terminate(f: &ImplItemFn, errors: &mut Errors) -> Option<Terminate> {
    let sig = &f.sig;
    let mut check = Findings::new(errors);
    if !sig.generics.params.is_empty() {
        check.fail(&sig.generics, format!("`terminate` cannot be generic: {TERMINATE_SYNTAX}"));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if matches!(*r.ty, Type::Reference(_)) => {}
        _ => check.fail(&sig.ident, format!("`terminate` takes `&mut self` (or `&self`): {TERMINATE_SYNTAX}")),
    }
    let typed = typed_args(sig);
    if typed.is_empty() || typed.len() > 2 {
        check.fail(&sig.ident, format!("`terminate` takes the reason and optionally the socket: {TERMINATE_SYNTAX}"));
    }
    check.ok.then(|| Terminate {
        method: sig.ident.clone(),
        socket: typed.len() == 2,
        is_async: sig.asyncness.is_some(),
    })
}

/// The mistakes found in one item: recorded in `errors`, and remembered so
/// the item is left out of the expansion.
struct Findings<'e> {
    errors: &'e mut Errors,
    ok: bool,
}

impl<'e> Findings<'e> {
    fn new(errors: &'e mut Errors) -> Self {
        Findings { errors, ok: true }
    }

    fn fail(&mut self, tokens: &dyn ToTokens, message: String) {
        self.errors.push_spanned(tokens, message);
        self.ok = false;
    }
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
    let mut check = Findings::new(errors);
    if !sig.generics.params.is_empty() {
        check.fail(&sig.generics, format!("handlers cannot be generic: {HANDLER_SYNTAX}"));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if !matches!(*receiver.ty, Type::Reference(_)) {
                check.fail(
                    receiver,
                    format!("handlers take `&mut self` or `&self`, not `self` by value: {HANDLER_SYNTAX}"),
                );
            }
        }
        _ => check.fail(name, format!("handler `{name}` needs a `&mut self` (or `&self`) receiver: {HANDLER_SYNTAX}")),
    }
    let typed = typed_args(sig);
    let args = match typed.as_slice() {
        [] => {
            check.fail(
                name,
                format!(
                    "handler `{name}` needs a payload argument (use `_payload: Value` to ignore it): {HANDLER_SYNTAX}"
                ),
            );
            None
        }
        [only] if is_mut_ref(&only.ty) => {
            check.fail(
                only,
                format!("handler `{name}` needs a payload argument before the socket (use `_payload: Value` to ignore it): {HANDLER_SYNTAX}"),
            );
            None
        }
        [payload] => Some(Args { payload: (*payload.ty).clone(), socket: false }),
        [first, second] if is_mut_ref(&first.ty) && !is_mut_ref(&second.ty) => {
            check.fail(first, format!("the socket argument comes after the payload: {HANDLER_SYNTAX}"));
            None
        }
        [payload, _socket] => Some(Args { payload: (*payload.ty).clone(), socket: true }),
        [_, _, extra, ..] => {
            check.fail(
                extra,
                format!("handlers take the payload and optionally the socket, nothing more: {HANDLER_SYNTAX}"),
            );
            None
        }
    };
    if let Some(args) = &args {
        if let Some(message) = payload_type_problem(&args.payload) {
            check.fail(&args.payload, message);
        }
    }
    if check.ok {
        args
    } else {
        None
    }
}

#[cfg(test)]
mod history_tests {
    use super::parse_age;

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(parse_age("300s"), Some(300_000));
        assert_eq!(parse_age("5m"), Some(300_000));
        assert_eq!(parse_age("2h"), Some(7_200_000));
        assert_eq!(parse_age("1d"), Some(86_400_000));
        assert_eq!(parse_age("250ms"), Some(250));
        for bad in ["", "5", "m", "5 minutes", "-5m", "0s", "25d", "99999999999999999999d"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
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
        let events: Vec<_> = channel
            .handlers
            .iter()
            .map(|h| match &h.kind {
                Kind::In(e) => (e.value(), h.socket),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(events, [("a".into(), true), ("b".into(), false), ("c".into(), false)]);
        assert!(channel.item.items.iter().all(|i| match i {
            ImplItem::Fn(f) => f.attrs.is_empty(),
            _ => true,
        }));
    }

    #[test]
    fn every_mistake_is_reported() {
        let (_, errors) = run(syn::parse_quote! {
            impl C {
                #[handle_in("a")]
                fn sync_is_fine(&mut self, p: Value) {}
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
