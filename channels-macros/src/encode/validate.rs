//! Checking `#[derive(Encode)]`: a struct with named fields, and field
//! lists that name existing fields.

use std::collections::HashSet;

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Data, DeriveInput, Fields, Generics, Type};

use super::parse::{EncodeArgs, FieldList};
use crate::common::{did_you_mean, unraw, Errors};

/// What to serialize.
pub(crate) struct Encode<'a> {
    pub(crate) krate: Option<&'a syn::Path>,
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    /// The encoded fields, in declaration order.
    pub(crate) fields: Vec<Field<'a>>,
    /// Type parameters that need a `Serialize` bound.
    pub(crate) bounded: Vec<&'a Ident>,
}

pub(crate) struct Field<'a> {
    pub(crate) member: &'a Ident,
    pub(crate) name: String,
    pub(crate) ty: &'a Type,
}

const SUPPORTED: &str = "`#[derive(Encode)]` supports structs with named fields";

pub(crate) fn validate<'a>(input: &'a DeriveInput, args: &'a EncodeArgs, errors: &mut Errors) -> Option<Encode<'a>> {
    let named = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => Some(named),
            Fields::Unnamed(fields) => {
                errors.push_spanned(
                    fields,
                    format!("{SUPPORTED}, not tuple structs: give the fields names, or derive `serde::Serialize`"),
                );
                None
            }
            Fields::Unit => {
                errors.push_spanned(
                    &input.ident,
                    format!("{SUPPORTED}, not unit structs: a unit struct has no fields to choose from; derive `serde::Serialize` instead"),
                );
                None
            }
        },
        Data::Enum(e) => {
            errors.push_spanned(e.enum_token, format!("{SUPPORTED}, not enums: derive `serde::Serialize` instead"));
            None
        }
        Data::Union(u) => {
            errors.push_spanned(u.union_token, format!("{SUPPORTED}, not unions"));
            None
        }
    };

    if let (Some(only), Some(except)) = (&args.only, &args.except) {
        let message = "use either `only` or `except`, not both: `only` lists the fields to encode, `except` the ones to leave out";
        errors.push_spanned(&except.key, message);
        let _ = only;
    }
    for list in [&args.only, &args.except].into_iter().flatten() {
        if list.fields.is_empty() {
            let message = if list.key == "only" {
                "`only = []` would encode no field; list the fields to encode, e.g. `only = [content]`"
            } else {
                "`except = []` leaves out nothing; remove it to encode every field"
            };
            errors.push(syn::Error::new(list.brackets, message));
        }
        let mut seen = HashSet::new();
        for field in &list.fields {
            if !seen.insert(unraw(field)) {
                errors.push_spanned(field, format!("`{}` is listed twice", unraw(field)));
            }
        }
    }

    let named = named?;
    let declared: Vec<(&Ident, String, &Type)> =
        named.named.iter().filter_map(|f| f.ident.as_ref().map(|ident| (ident, unraw(ident), &f.ty))).collect();
    for list in [&args.only, &args.except].into_iter().flatten() {
        check_exists(list, &declared, &input.ident, errors);
    }

    let selected = |name: &str| match (&args.only, &args.except) {
        (Some(only), _) => only.fields.iter().any(|f| unraw(f) == name),
        (None, Some(except)) => !except.fields.iter().any(|f| unraw(f) == name),
        (None, None) => true,
    };
    let fields: Vec<Field> = declared
        .into_iter()
        .filter(|(_, name, _)| selected(name))
        .map(|(member, name, ty)| Field { member, name, ty })
        .collect();
    let bounded = input
        .generics
        .type_params()
        .map(|p| &p.ident)
        .filter(|param| fields.iter().any(|f| mentions(f.ty.to_token_stream(), param)))
        .collect();
    Some(Encode { krate: args.krate.as_ref(), ident: &input.ident, generics: &input.generics, fields, bounded })
}

fn check_exists(list: &FieldList, declared: &[(&Ident, String, &Type)], ty: &Ident, errors: &mut Errors) {
    for field in &list.fields {
        let name = unraw(field);
        if !declared.iter().any(|(_, declared, _)| *declared == name) {
            let hint = did_you_mean(&name, declared.iter().map(|(_, n, _)| n.as_str()));
            let hint = if hint.is_empty() {
                let all: Vec<String> = declared.iter().map(|(_, n, _)| format!("`{n}`")).collect();
                format!("; the fields are {}", all.join(", "))
            } else {
                hint
            };
            errors.push_spanned(field, format!("`{ty}` has no field `{name}`{hint}"));
        }
    }
}

/// Whether the type `tokens` mentions the type parameter `param`, outside
/// `PhantomData<..>` (which serializes whatever its parameter).
pub(crate) fn mentions(tokens: TokenStream, param: &Ident) -> bool {
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match tt {
            TokenTree::Ident(ident) if ident == "PhantomData" => {
                // Skip `<..>`.
                if matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '<') {
                    let mut depth = 0usize;
                    for tt in iter.by_ref() {
                        if let TokenTree::Punct(p) = &tt {
                            match p.as_char() {
                                '<' => depth += 1,
                                '>' => {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            TokenTree::Ident(ident) if ident == *param => return true,
            TokenTree::Group(group) if mentions(group.stream(), param) => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::parse::parse_attrs;

    fn run(input: DeriveInput) -> Result<(Vec<String>, Vec<String>), String> {
        let mut errors = Errors::default();
        let args = parse_attrs(&input.attrs, &mut errors);
        let encode = validate(&input, &args, &mut errors);
        if let Some(error) = errors.into_error() {
            return Err(error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        }
        let encode = encode.unwrap();
        Ok((
            encode.fields.iter().map(|f| f.name.clone()).collect(),
            encode.bounded.iter().map(|b| b.to_string()).collect(),
        ))
    }

    #[test]
    fn selections() {
        let all = run(syn::parse_quote!(
            struct S {
                a: u8,
                r#type: String,
                c: u8,
            }
        ))
        .unwrap();
        assert_eq!(all.0, ["a", "type", "c"]);
        let only = run(syn::parse_quote!(
            #[encode(only = [c, r#type])]
            struct S {
                a: u8,
                r#type: String,
                c: u8,
            }
        ));
        assert_eq!(only.unwrap().0, ["type", "c"]);
        let except = run(syn::parse_quote!(
            #[encode(except = [a])]
            struct S {
                a: u8,
                r#type: String,
                c: u8,
            }
        ));
        assert_eq!(except.unwrap().0, ["type", "c"]);
    }

    #[test]
    fn bounds_follow_encoded_fields() {
        let (_, bounded) = run(syn::parse_quote! {
            #[encode(except = [hidden])]
            struct S<'a, T, U, V, W> { t: Vec<T>, hidden: U, v: &'a [Option<V>], w: PhantomData<W> }
        })
        .unwrap();
        assert_eq!(bounded, ["T", "V"]);
    }

    #[test]
    fn mistakes() {
        let err = run(syn::parse_quote!(
            #[encode(only = [contnet])]
            struct S {
                content: String,
            }
        ))
        .unwrap_err();
        assert!(err.contains("did you mean `content`?"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(only = [zzz])]
            struct S {
                content: String,
                id: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("the fields are `content`, `id`"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(only = [a], except = [b])]
            struct S {
                a: u8,
                b: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(only = [a, a])]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(only = [])]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("no field"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(onyl = [a])]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("did you mean `only`?"), "{err}");
        let err = run(syn::parse_quote!(
            enum E {
                A,
            }
        ))
        .unwrap_err();
        assert!(err.contains("not enums"), "{err}");
        let err = run(syn::parse_quote!(
            struct T(u8);
        ))
        .unwrap_err();
        assert!(err.contains("not tuple structs"), "{err}");
    }
}
