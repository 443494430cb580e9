//! Checking `socket!`'s routes: valid patterns, none unreachable.

use proc_macro2::Ident;
use syn::{Attribute, Type, Visibility};

use super::parse::{Pattern, SocketInput, ROUTE_SYNTAX};

/// A socket whose routes have been checked.
pub(crate) struct Socket {
    pub(crate) krate: Option<syn::Path>,
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    /// The valid routes (invalid ones are left out so that the generated
    /// code still type-checks the rest).
    pub(crate) routes: Vec<Route>,
}

pub(crate) struct Route {
    pub(crate) pattern: syn::LitStr,
    pub(crate) ty: Type,
}

/// Validates the routes; returns the socket with its valid routes and the
/// errors found, if any.
pub(crate) fn validate(input: SocketInput) -> (Socket, Option<syn::Error>) {
    let SocketInput { krate, attrs, vis, ident, routes: raw, mut errors } = input;
    let mut routes: Vec<Route> = Vec::new();
    // Patterns seen so far, valid or shadowed, to check later ones against.
    let mut earlier: Vec<String> = Vec::new();
    for route in raw {
        let lit = match route.pattern {
            Pattern::Lit(lit) => lit,
            Pattern::Other(tokens) => {
                let text = tokens.to_string();
                let message = if syn::parse2::<Ident>(tokens.clone()).is_ok() {
                    format!("topic patterns are string literals: write `channel \"{text}\" => ..;`")
                } else {
                    format!("topic patterns are string literals, e.g. `\"room:*\"` or `\"lobby\"`; {ROUTE_SYNTAX}")
                };
                errors.push_spanned(tokens, message);
                continue;
            }
        };
        let text = lit.value();
        if let Err(message) = check_pattern(&text) {
            errors.push_spanned(&lit, message);
            continue;
        }
        if let Some(message) = shadowing(&text, &earlier) {
            errors.push_spanned(&lit, message);
            continue;
        }
        earlier.push(text);
        routes.push(Route { pattern: lit, ty: route.ty });
    }
    (Socket { krate, attrs, vis, ident, routes }, errors.into_error())
}

/// Checks one pattern against Phoenix's rules: an exact topic, or a prefix
/// ending in a single `*`.
pub(crate) fn check_pattern(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("a topic pattern cannot be empty; write an exact topic like \"lobby\" or a prefix like \"room:*\""
            .to_owned());
    }
    if text.contains("**") {
        let fixed = format!("{}*", text.split('*').next().unwrap_or_default());
        return Err(format!(
            "`**` is not a topic pattern: a single trailing `*` already matches the rest of the topic; write {fixed:?}"
        ));
    }
    if let Some(pos) = text.find('*') {
        if pos + 1 != text.len() {
            let fixed = format!("{}*", &text[..pos]);
            return Err(format!(
                "`*` may only end a topic pattern (patterns match a prefix, not a glob); write {fixed:?} and read the \
                 rest of the topic with `topic.rest()` in `join`"
            ));
        }
    }
    Ok(())
}

/// Why `text` can never match because of an earlier pattern, if it cannot.
pub(crate) fn shadowing(text: &str, earlier: &[String]) -> Option<String> {
    let (prefix, wildcard) = split(text);
    for before in earlier {
        if before == text {
            return Some(format!("duplicate route for {text:?}: the first route for it always wins; remove this one"));
        }
        let (before_prefix, before_wildcard) = split(before);
        let shadowed = if before_wildcard { prefix.starts_with(before_prefix) } else { !wildcard && text == before };
        if shadowed {
            return Some(format!(
                "route {text:?} is unreachable: {before:?} above already matches every topic it matches; \
                 move this route above {before:?}"
            ));
        }
    }
    None
}

fn split(pattern: &str) -> (&str, bool) {
    match pattern.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (pattern, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_patterns() {
        for ok in ["lobby", "room:*", "*", "a:b:c", "rooms:lobby"] {
            assert_eq!(check_pattern(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn invalid_patterns() {
        assert!(check_pattern("").unwrap_err().contains("cannot be empty"));
        let err = check_pattern("room:**").unwrap_err();
        assert!(err.contains("`**`") && err.contains("\"room:*\""), "{err}");
        let err = check_pattern("room:*:messages").unwrap_err();
        assert!(err.contains("may only end") && err.contains("\"room:*\""), "{err}");
        assert!(check_pattern("*:x").unwrap_err().contains("\"*\""));
    }

    #[test]
    fn shadowed_patterns() {
        let earlier = vec!["room:*".to_owned(), "lobby".to_owned()];
        assert!(shadowing("room:lobby", &earlier).unwrap().contains("unreachable"));
        assert!(shadowing("room:vip:*", &earlier).unwrap().contains("unreachable"));
        assert!(shadowing("room:*", &earlier).unwrap().contains("duplicate"));
        assert!(shadowing("lobby", &earlier).unwrap().contains("duplicate"));
        assert_eq!(shadowing("room", &earlier), None);
        assert_eq!(shadowing("lobby:*", &earlier), None);
        assert_eq!(shadowing("lobby*", &earlier), None);
        assert!(shadowing("anything", &["*".to_owned()]).unwrap().contains("unreachable"));
    }
}
