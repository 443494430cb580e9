//! A `join` declared `-> Join<Self>` (whose response is a
//! `serde_json::Value`) that answers with a struct: rustc would only say
//! "expected `Value`, found `Out`" inside the body. Where the body shows
//! the response's type (a struct literal, or a variable bound to one), the
//! error is reported at the return type with the fix, `Join<Self, Out>`,
//! and the signature is corrected in the expansion so rustc adds nothing.

use std::collections::HashMap;

use quote::ToTokens;
use syn::visit::Visit;
use syn::{Expr, GenericArgument, ImplItemFn, Pat, PathArguments, ReturnType, Type};

use crate::common::Errors;

/// Checks `join` and, on a mistake, records it and writes the fix into its
/// signature.
pub(crate) fn check(f: &mut ImplItemFn, errors: &mut Errors) {
    let ReturnType::Type(_, ty) = &mut f.sig.output else { return };
    if default_join_args(ty).is_none() {
        return;
    }
    let mut found = Responses::default();
    found.visit_block(&f.block);
    let Some(response) = found.first() else { return };
    let written = ty.to_token_stream().to_string().replace(" < ", "<").replace(" >", ">");
    let response_text = response.to_token_stream().to_string().replace(' ', "");
    errors.push_spanned(
        &*ty,
        format!(
            "this `join` answers with `{response_text}`, but `{written}` answers with a `serde_json::Value`: write \
             `Join<Self, {response_text}>`, so `{response_text}` is sent as its `Encode` shape and typed as such in \
             the generated TypeScript"
        ),
    );
    if let Some(args) = default_join_args(ty) {
        args.push(GenericArgument::Type(response));
    }
}

/// The arguments of `Join<C>` written with one argument (its response left
/// at the default), to push the response into.
fn default_join_args(ty: &mut Type) -> Option<&mut syn::punctuated::Punctuated<GenericArgument, syn::Token![,]>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last_mut()?;
    if last.ident != "Join" {
        return None;
    }
    match &mut last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => Some(&mut args.args),
        _ => None,
    }
}

/// The types of the responses `Ok((response, channel))` gives, where the
/// body shows them.
#[derive(Default)]
struct Responses {
    /// `let name = Type { .. }` and `let name: Type = ..`.
    bindings: HashMap<String, Type>,
    found: Vec<Type>,
}

impl Responses {
    fn first(self) -> Option<Type> {
        self.found.into_iter().next()
    }

    fn type_of(&self, expr: &Expr) -> Option<Type> {
        match expr {
            Expr::Struct(literal) if literal.qself.is_none() && !literal.path.is_ident("Self") => {
                Some(Type::Path(syn::TypePath { qself: None, path: literal.path.clone() }))
            }
            Expr::Path(path) => self.bindings.get(&path.path.get_ident()?.to_string()).cloned(),
            Expr::Paren(paren) => self.type_of(&paren.expr),
            _ => None,
        }
    }
}

impl<'ast> Visit<'ast> for Responses {
    fn visit_local(&mut self, local: &'ast syn::Local) {
        syn::visit::visit_local(self, local);
        let (name, ty) = match &local.pat {
            Pat::Ident(ident) => (ident, None),
            Pat::Type(typed) => match &*typed.pat {
                Pat::Ident(ident) => (ident, Some((*typed.ty).clone())),
                _ => return,
            },
            _ => return,
        };
        let ty = ty.or_else(|| local.init.as_ref().and_then(|init| self.type_of(&init.expr)));
        match ty {
            Some(ty) => self.bindings.insert(name.ident.to_string(), ty),
            None => self.bindings.remove(&name.ident.to_string()),
        };
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        syn::visit::visit_expr_call(self, call);
        let is_ok = matches!(&*call.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ok"));
        if !is_ok || call.args.len() != 1 {
            return;
        }
        if let Some(Expr::Tuple(tuple)) = call.args.first() {
            if tuple.elems.len() == 2 {
                if let Some(ty) = self.type_of(&tuple.elems[0]) {
                    if !is_value(&ty) {
                        self.found.push(ty);
                    }
                }
            }
        }
    }

    /// Closures and nested functions answer for themselves.
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// `Value` or `serde_json::Value`, the default response.
fn is_value(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(f: ImplItemFn) -> (String, Option<String>) {
        let mut f = f;
        let mut errors = Errors::default();
        check(&mut f, &mut errors);
        let error = errors.into_error().map(|e| e.to_string());
        let ReturnType::Type(_, ty) = &f.sig.output else { unreachable!() };
        (ty.to_token_stream().to_string(), error)
    }

    #[test]
    fn finds_the_response_type() {
        let (ty, error) = fixed(syn::parse_quote! {
            async fn join(topic: Topic, params: Value) -> Join<Self> {
                if topic.rest().is_empty() {
                    return Err(JoinError::reason("no"));
                }
                Ok((Joined { comments: vec![] }, Comments))
            }
        });
        assert_eq!(ty, "Join < Self , Joined >");
        let error = error.unwrap();
        assert!(error.contains("write `Join<Self, Joined>`"), "{error}");

        let (ty, _) = fixed(syn::parse_quote! {
            fn join(topic: Topic, params: Value) -> Join<Self> {
                let joined = crate::Joined { n: 1 };
                let other: Value = json!({});
                Ok((joined, Comments))
            }
        });
        assert_eq!(ty, "Join < Self , crate :: Joined >");
    }

    #[test]
    fn leaves_what_it_cannot_see_to_rustc() {
        for f in [
            syn::parse_quote! { fn join(t: Topic, p: Value) -> Join<Self> { Ok((json!({}), C)) } },
            syn::parse_quote! { fn join(t: Topic, p: Value) -> Join<Self> { let v = json!({}); Ok((v, C)) } },
            syn::parse_quote! { fn join(t: Topic, p: Value) -> Join<Self> { Ok((make(), C)) } },
            syn::parse_quote! { fn join(t: Topic, p: Value) -> Join<Self, Out> { Ok((Out {}, C)) } },
            syn::parse_quote! { fn join(t: Topic, p: Value) -> Join<Self> { let v: Value = x(); Ok((v, C)) } },
        ] {
            let (_, error) = fixed(f);
            assert!(error.is_none(), "{error:?}");
        }
    }
}
