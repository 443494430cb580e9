//! Parsing `socket!`'s body, recovering after a malformed route so every
//! malformed route is reported at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{braced, Attribute, Ident, Token, Type, Visibility};

use crate::common::Errors;

pub(crate) const ROUTE_SYNTAX: &str = "expected `channel \"topic:*\" => ChannelType;`";
const SOCKET_SYNTAX: &str = "expected a socket declaration: `pub SocketName { channel \"topic:*\" => ChannelType; }`";

/// `socket!`'s input as written.
pub(crate) struct SocketInput {
    /// `#![crate = path]`.
    pub(crate) krate: Option<syn::Path>,
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    pub(crate) routes: Vec<RawRoute>,
    /// Malformed routes and attributes, reported along with what
    /// validation finds.
    pub(crate) errors: Errors,
}

/// One `channel "pattern" => Type;` line.
pub(crate) struct RawRoute {
    /// The pattern: a string literal, or whatever was written instead.
    pub(crate) pattern: Pattern,
    pub(crate) ty: Type,
}

pub(crate) enum Pattern {
    Lit(syn::LitStr),
    /// Not a string literal; reported during validation.
    Other(TokenStream),
}

impl Parse for SocketInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut krate = None;
        for attr in input.call(Attribute::parse_inner)? {
            match parse_crate_attr(&attr) {
                Ok(path) if krate.is_none() => krate = Some(path),
                Ok(_) => errors.push_spanned(&attr, "duplicate `#![crate = ..]`"),
                Err(error) => errors.push(error),
            }
        }
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        if input.peek(Token![struct]) {
            let token: Token![struct] = input.parse()?;
            return Err(syn::Error::new_spanned(
                token,
                format!("remove `struct`: `socket!` declares the struct itself; {SOCKET_SYNTAX}"),
            ));
        }
        let ident: Ident = input.parse().map_err(|e| syn::Error::new(e.span(), SOCKET_SYNTAX))?;
        if input.peek(Token![<]) {
            return Err(input.error("a socket is a unit struct and cannot be generic"));
        }
        if !input.peek(syn::token::Brace) {
            return Err(input.error(format!("expected `{{` after the socket name; {SOCKET_SYNTAX}")));
        }
        let body;
        braced!(body in input);
        let mut routes = Vec::new();
        while !body.is_empty() {
            if let Some(route) = parse_route(&body, &mut errors) {
                routes.push(route);
            }
        }
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            errors.push_spanned(rest, "unexpected tokens after the socket declaration; `socket!` declares one socket");
        }
        Ok(SocketInput { krate, attrs, vis, ident, routes, errors })
    }
}

/// `#![crate = path]` or `#![crate = "path"]`.
fn parse_crate_attr(attr: &Attribute) -> syn::Result<syn::Path> {
    let unknown = || {
        syn::Error::new_spanned(attr, "unknown inner attribute; the only one `socket!` accepts is `#![crate = path]`")
    };
    let syn::Meta::NameValue(nv) = &attr.meta else { return Err(unknown()) };
    if !nv.path.is_ident("crate") {
        return Err(unknown());
    }
    expr_to_path(&nv.value)
}

/// A path given as `path` or `"path"`.
pub(crate) fn expr_to_path(expr: &syn::Expr) -> syn::Result<syn::Path> {
    match expr {
        syn::Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.parse_with(syn::Path::parse_mod_style),
        other => Err(syn::Error::new_spanned(
            other,
            "expected a path to the `phx-channels` crate, e.g. `crate = my_channels`",
        )),
    }
}

/// Parses one route; on a malformed one records the error, skips past its
/// `;` and returns `None`.
fn parse_route(input: ParseStream, errors: &mut Errors) -> Option<RawRoute> {
    // `channel`
    let keyword_ok = input.fork().parse::<Ident>().is_ok_and(|i| i == "channel");
    if !keyword_ok {
        let found = describe_next(input);
        errors.push(syn::Error::new(
            next_span(input),
            format!("routes start with `channel`: {ROUTE_SYNTAX} (found {found})"),
        ));
        skip_past_semi(input);
        return None;
    }
    let _channel: Ident = input.parse().ok()?;

    // "pattern"
    let pattern = if input.peek(syn::LitStr) {
        Pattern::Lit(input.parse().ok()?)
    } else {
        let mut tokens = TokenStream::new();
        while !input.is_empty() && !input.peek(Token![=>]) && !input.peek(Token![;]) {
            tokens.extend(std::iter::once(input.parse::<TokenTree>().ok()?));
        }
        if tokens.is_empty() {
            errors.push(syn::Error::new(next_span(input), format!("missing topic pattern; {ROUTE_SYNTAX}")));
            skip_past_semi(input);
            return None;
        }
        Pattern::Other(tokens)
    };

    // =>
    if input.peek(Token![=>]) {
        let _arrow: Token![=>] = input.parse().ok()?;
    } else {
        let found = describe_next(input);
        errors.push(syn::Error::new(
            next_span(input),
            format!("expected `=>` after the topic pattern (found {found}); {ROUTE_SYNTAX}"),
        ));
        skip_past_semi(input);
        return None;
    }

    // ChannelType
    if input.is_empty() || input.peek(Token![;]) {
        errors.push(syn::Error::new(next_span(input), format!("missing channel type after `=>`; {ROUTE_SYNTAX}")));
        skip_past_semi(input);
        return None;
    }
    let ty: Type = match input.parse() {
        Ok(ty) => ty,
        Err(error) => {
            errors.push(syn::Error::new(error.span(), format!("{error}; {ROUTE_SYNTAX}")));
            skip_past_semi(input);
            return None;
        }
    };

    // ;
    if input.peek(Token![;]) {
        let _semi: Token![;] = input.parse().ok()?;
    } else if input.is_empty() || input.fork().parse::<Ident>().is_ok_and(|i| i == "channel") {
        // A forgotten `;`: report it at the type and keep the route.
        errors.push_spanned(ty.to_token_stream(), format!("missing `;` after this route; {ROUTE_SYNTAX}"));
    } else {
        let mut junk = TokenStream::new();
        while !input.is_empty() && !input.peek(Token![;]) {
            junk.extend(std::iter::once(input.parse::<TokenTree>().ok()?));
        }
        let _ = input.parse::<Token![;]>();
        errors.push_spanned(junk, format!("unexpected tokens after the channel type; {ROUTE_SYNTAX}"));
    }
    Some(RawRoute { pattern, ty })
}

fn next_span(input: ParseStream) -> Span {
    input.cursor().token_tree().map_or_else(|| input.span(), |(tt, _)| tt.span())
}

fn describe_next(input: ParseStream) -> String {
    match input.cursor().token_tree() {
        Some((tt, _)) => format!("`{tt}`"),
        None => "the end of the socket body".to_owned(),
    }
}

fn skip_past_semi(input: ParseStream) {
    while !input.is_empty() {
        if input.peek(Token![;]) {
            let _ = input.parse::<Token![;]>();
            return;
        }
        if input.parse::<TokenTree>().is_err() {
            return;
        }
    }
}
