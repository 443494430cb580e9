//! Checking `#[derive(Encode)]`: a struct with named fields, field lists
//! that name existing fields, field options that apply, and distinct wire
//! names.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{Data, DeriveInput, Fields, GenericArgument, Generics, PathArguments, Type};

use super::parse::{EncodeArgs, FieldArgs, FieldList};
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
    /// The name on the wire: the field's own (without `r#`), after
    /// `rename_all`, or its `rename`.
    pub(crate) name: String,
    pub(crate) ty: &'a Type,
    /// Leave the field out when it is `None`.
    pub(crate) skip_none: bool,
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

    if let (Some(_), Some(except)) = (&args.only, &args.except) {
        let message = "use either `only` or `except`, not both: `only` lists the fields to encode, `except` the ones to leave out";
        errors.push_spanned(&except.key, message);
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
    let declared: Vec<Declared> = named
        .named
        .iter()
        .zip(&args.fields)
        .filter_map(|(f, options)| {
            f.ident.as_ref().map(|ident| Declared { ident, name: unraw(ident), ty: &f.ty, options })
        })
        .collect();
    for list in [&args.only, &args.except].into_iter().flatten() {
        check_exists(list, &declared, &input.ident, errors);
    }

    let left_out_by = |name: &str| match (&args.only, &args.except) {
        (Some(only), _) => (!only.fields.iter().any(|f| unraw(f) == name)).then_some(&only.key),
        (None, Some(except)) => except.fields.iter().any(|f| unraw(f) == name).then_some(&except.key),
        (None, None) => None,
    };
    let mut fields = Vec::new();
    for declared in declared {
        let is_option = is_option(declared.ty);
        if let (Some(key), false) = (&declared.options.skip_none, is_option) {
            errors.push_spanned(
                key,
                format!(
                    "`skip_none` needs a field whose type is written `Option<..>`, and the type of `{}` is not (a derive cannot see through type aliases): remove `skip_none`, or write the type as `Option<..>`",
                    declared.name
                ),
            );
        }
        if let Some(list) = left_out_by(&declared.name) {
            let options = [
                declared.options.rename.as_ref().map(|r| (r.span(), "rename")),
                declared.options.skip_none.as_ref().map(|k| (k.span(), "skip_none")),
            ];
            for (span, option) in options.into_iter().flatten() {
                errors.push(syn::Error::new(
                    span,
                    format!("`{option}` has no effect: `{list} = [..]` leaves `{}` out of the encoding", declared.name),
                ));
            }
            continue;
        }
        let name = match (&declared.options.rename, &args.rename_all) {
            (Some(rename), _) => rename.value(),
            (None, Some((rule, _))) => rule.apply(&declared.name),
            (None, None) => declared.name.clone(),
        };
        let skip_none = is_option && (declared.options.skip_none.is_some() || args.skip_none.is_some());
        fields.push((Field { member: declared.ident, name, ty: declared.ty, skip_none }, declared.options));
    }

    if let Some(key) = &args.skip_none {
        if !fields.iter().any(|(f, _)| is_option(f.ty)) {
            errors.push_spanned(
                key,
                "`skip_none` on the struct does nothing: no encoded field's type is written `Option<..>`",
            );
        }
    }
    check_distinct_names(&fields, args, errors);

    let fields: Vec<Field> = fields.into_iter().map(|(field, _)| field).collect();
    let bounded = input
        .generics
        .type_params()
        .map(|p| &p.ident)
        .filter(|param| fields.iter().any(|f| mentions(f.ty, param)))
        .collect();
    Some(Encode { krate: args.krate.as_ref(), ident: &input.ident, generics: &input.generics, fields, bounded })
}

/// A named field and its options.
struct Declared<'a> {
    ident: &'a Ident,
    name: String,
    ty: &'a Type,
    options: &'a FieldArgs,
}

fn check_exists(list: &FieldList, declared: &[Declared], ty: &Ident, errors: &mut Errors) {
    for field in &list.fields {
        let name = unraw(field);
        if !declared.iter().any(|d| d.name == name) {
            let hint = did_you_mean(&name, declared.iter().map(|d| d.name.as_str()));
            let hint = if hint.is_empty() {
                let all: Vec<String> = declared.iter().map(|d| format!("`{}`", d.name)).collect();
                format!("; the fields are {}", all.join(", "))
            } else {
                hint
            };
            errors.push_spanned(field, format!("`{ty}` has no field `{name}`{hint}"));
        }
    }
}

/// Two encoded fields with one wire name would make an object with a
/// repeated key; reported at the second.
fn check_distinct_names(fields: &[(Field, &FieldArgs)], args: &EncodeArgs, errors: &mut Errors) {
    let mut seen: HashMap<&str, &Ident> = HashMap::new();
    for (field, options) in fields {
        let Some(first) = seen.insert(&field.name, field.member) else { continue };
        // Put it back: a third field is reported against the first too.
        seen.insert(&field.name, first);
        let span: Span = match &options.rename {
            Some(rename) => rename.span(),
            None => field.member.span(),
        };
        let how = match (&options.rename, &args.rename_all) {
            (None, Some((_, rule))) => format!(" under `rename_all = {:?}`", rule.value()),
            _ => String::new(),
        };
        errors.push(syn::Error::new(
            span,
            format!(
                "`{}` and `{}` would both be encoded as {:?}{how}; give one of them another name with `#[encode(rename = \"..\")]`",
                unraw(first),
                unraw(field.member),
                field.name
            ),
        ));
    }
}

/// Whether `ty` is written `Option<T>`, `std::option::Option<T>` or
/// `core::option::Option<T>`. Only the spelling can be checked: a macro
/// cannot see through type aliases.
pub(crate) fn is_option(ty: &Type) -> bool {
    option_inner(ty).is_some()
}

/// `T` of a type written as [`is_option`] accepts.
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Group(group) => option_inner(&group.elem),
        Type::Paren(paren) => option_inner(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let segments: Vec<&syn::PathSegment> = path.path.segments.iter().collect();
            let (last, prefix) = segments.split_last()?;
            let prefix_ok = match prefix {
                [] => path.path.leading_colon.is_none(),
                [krate, module] => (krate.ident == "std" || krate.ident == "core") && module.ident == "option",
                _ => false,
            };
            let inner = match &last.arguments {
                PathArguments::AngleBracketed(args) if args.args.len() == 1 => match args.args.first() {
                    Some(GenericArgument::Type(inner)) => Some(inner),
                    _ => None,
                },
                _ => None,
            };
            let spelled = prefix_ok && last.ident == "Option" && prefix.iter().all(|s| s.arguments.is_none());
            inner.filter(|_| spelled)
        }
        _ => None,
    }
}

/// Whether the type `ty` mentions the type parameter `param`, outside
/// `PhantomData<..>` (which serializes as unit whatever its parameter).
pub(crate) fn mentions(ty: &Type, param: &Ident) -> bool {
    let mut visitor = Mentions { param, found: false };
    visitor.visit_type(ty);
    visitor.found
}

struct Mentions<'a> {
    param: &'a Ident,
    found: bool,
}

impl<'ast> Visit<'ast> for Mentions<'_> {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        // `T`, `T::Assoc`; `<T as Trait>::Assoc` is reached through the
        // qualified self type.
        let starts_with_param =
            path.leading_colon.is_none() && path.segments.first().is_some_and(|s| s.ident == *self.param);
        if starts_with_param {
            self.found = true;
        } else if path.segments.last().is_none_or(|s| s.ident != "PhantomData") {
            syn::visit::visit_path(self, path);
        }
    }

    /// A macro in type position is opaque: any mention of the parameter
    /// in its tokens counts, as a missing bound would be an error and an
    /// extra one at worst a narrower impl.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.found |= tokens_mention(mac.tokens.clone(), self.param);
    }
}

fn tokens_mention(tokens: TokenStream, param: &Ident) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(ident) => ident == *param,
        TokenTree::Group(group) => tokens_mention(group.stream(), param),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::parse::parse;

    fn run(input: DeriveInput) -> Result<(Vec<String>, Vec<String>), String> {
        let mut errors = Errors::default();
        let args = parse(&input, &mut errors);
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
    fn wire_names() {
        let (names, _) = run(syn::parse_quote!(
            #[encode(rename_all = "camelCase")]
            struct S {
                user_id: u8,
                #[encode(rename = "when")]
                inserted_at: u8,
                r#type: u8,
            }
        ))
        .unwrap();
        assert_eq!(names, ["userId", "when", "type"]);
        let (names, _) = run(syn::parse_quote!(
            #[encode(rename_all = "SCREAMING-KEBAB-CASE")]
            struct S {
                user_id: u8,
            }
        ))
        .unwrap();
        assert_eq!(names, ["USER-ID"]);
    }

    /// What the token counting this replaced got wrong: a path that only
    /// ends in the parameter's name, and `PhantomData` written with a path.
    #[test]
    fn mentions_follows_paths() {
        let (_, bounded) = run(syn::parse_quote! {
            struct S<T, U, V, W, X, Y> {
                a: <T as Tr>::Out,
                b: other::U,
                c: mac!(V),
                d: Box<dyn Fn(W) -> u8>,
                e: ::std::marker::PhantomData<X>,
                f: Y::Assoc,
            }
        })
        .unwrap();
        assert_eq!(bounded, ["T", "V", "W", "Y"]);
    }

    #[test]
    fn option_spellings() {
        for ty in [
            quote::quote!(Option<u8>),
            quote::quote!(std::option::Option<u8>),
            quote::quote!(::core::option::Option<Vec<u8>>),
        ] {
            assert!(is_option(&syn::parse2(ty.clone()).unwrap()), "{ty}");
        }
        for ty in [
            quote::quote!(Maybe<u8>),
            quote::quote!(my::Option<u8>),
            quote::quote!(Option),
            quote::quote!(&Option<u8>),
            quote::quote!(Vec<Option<u8>>),
        ] {
            assert!(!is_option(&syn::parse2(ty.clone()).unwrap()), "{ty}");
        }
    }

    #[test]
    fn skip_none_applies_to_options() {
        let input: DeriveInput = syn::parse_quote! {
            #[encode(skip_none)]
            struct S { a: Option<u8>, b: u8, #[encode(skip_none)] c: Option<u8> }
        };
        let mut errors = Errors::default();
        let args = parse(&input, &mut errors);
        let encode = validate(&input, &args, &mut errors).unwrap();
        assert!(!errors.has_errors());
        let skipped: Vec<bool> = encode.fields.iter().map(|f| f.skip_none).collect();
        assert_eq!(skipped, [true, false, true]);
    }

    #[test]
    fn option_mistakes() {
        let err = run(syn::parse_quote!(
            #[encode(rename_all = "camelcase")]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("\"SCREAMING-KEBAB-CASE\"; did you mean `camelCase`?"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(rename_all = "camelCase")]
            struct S {
                user_id: u8,
                #[encode(rename = "userId")]
                id: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("`user_id` and `id` would both be encoded as \"userId\""), "{err}");
        let err = run(syn::parse_quote!(
            struct S {
                #[encode(skip_none)]
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("`a` is not"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(skip_none)]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("does nothing"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(only = [a])]
            struct S {
                a: u8,
                #[encode(rename = "x")]
                b: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("`rename` has no effect: `only = [..]` leaves `b` out"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(rename = "x")]
            struct S {
                #[encode(only = [a], renam = "y")]
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("`rename` goes on a field"), "{err}");
        assert!(err.contains("`only` goes on the struct's"), "{err}");
        assert!(err.contains("did you mean `rename`?"), "{err}");
        let err = run(syn::parse_quote!(
            #[encode(impl_serialize = false, only = [a])]
            struct S {
                a: u8,
            }
        ))
        .unwrap_err();
        assert!(err.contains("`impl_serialize` is gone"), "{err}");
        let err = run(syn::parse_quote!(
            struct S {
                #[encode(skip_none = true)]
                a: Option<u8>,
            }
        ))
        .unwrap_err();
        assert!(err.contains("takes no value"), "{err}");
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
