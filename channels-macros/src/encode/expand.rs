//! Generating the `Serialize` impl with the chosen fields, `Encode` on top
//! of it, `IntoPayload` by value and `TypeScript`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::DeriveInput;

use super::parse::EncodeArgs;
use super::validate::Encode;
use crate::common::{crate_path, unraw};

pub(crate) fn expand(encode: &Encode) -> TokenStream {
    let krate = crate_path(encode.krate);
    let p = quote!(#krate::__private);
    let serde = quote!(#p::serde);
    let ident = encode.ident;
    let name = unraw(ident);
    let mut generics = encode.generics.clone();
    {
        let where_clause = generics.make_where_clause();
        for param in &encode.bounded {
            where_clause.predicates.push(syn::parse_quote!(#param: #serde::Serialize));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let serializer_ty = serializer_param(encode.generics);
    let serializer = Ident::new("__serializer", Span::mixed_site());
    let state = Ident::new("__state", Span::mixed_site());
    let mut_ = (!encode.fields.is_empty()).then(|| quote!(mut));
    let fields = encode.fields.iter().map(|field| {
        let member = field.member;
        let name = &field.name;
        // Spanned at the field's type: a type that is not `Serialize` is
        // reported on the field.
        let serialize = quote_spanned! {field.ty.span()=>
            #serde::ser::SerializeStruct::serialize_field(&mut #state, #name, &self.#member)?;
        };
        if field.skip_none {
            quote_spanned! {field.ty.span()=>
                if ::core::option::Option::is_some(&self.#member) {
                    #serialize
                } else {
                    #serde::ser::SerializeStruct::skip_field(&mut #state, #name)?;
                }
            }
        } else {
            serialize
        }
    });
    let count = count(encode);
    let body = quote! {
        let #mut_ #state = #serde::Serializer::serialize_struct(#serializer, #name, #count)?;
        #(#fields)*
        #serde::ser::SerializeStruct::end(#state)
    };
    let extras = by_value_and_typescript(encode, &p);
    quote! {
        #[automatically_derived]
        impl #impl_generics #serde::Serialize for #ident #ty_generics #where_clause {
            fn serialize<#serializer_ty>(&self, #serializer: #serializer_ty) -> ::core::result::Result<#serializer_ty::Ok, #serializer_ty::Error>
            where
                #serializer_ty: #serde::Serializer,
            {
                #body
            }
        }

        #[automatically_derived]
        impl #impl_generics #p::Encode for #ident #ty_generics #where_clause {}

        #extras
    }
}

/// `IntoPayload` by value (a join response, a push, a broadcast), and,
/// for a struct without type parameters, `TypeScript` with the names and
/// fields it encodes (a `skip_none` field is optional).
fn by_value_and_typescript(encode: &Encode, p: &TokenStream) -> TokenStream {
    let ident = encode.ident;
    let mut generics = encode.generics.clone();
    {
        let where_clause = generics.make_where_clause();
        for param in &encode.bounded {
            where_clause.predicates.push(syn::parse_quote!(#param: #p::serde::Serialize));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let into_payload = quote! {
        #[automatically_derived]
        impl #impl_generics #p::IntoPayload for #ident #ty_generics #where_clause {
            fn into_payload(self) -> ::core::result::Result<#p::Payload, #p::JsonError> {
                #p::IntoPayload::into_payload(&self)
            }
        }
    };
    // A probe cannot see through a type parameter: a generic struct says
    // nothing (it is `unknown`, or what a `ts_rs::TS` derive says).
    if encode.generics.type_params().next().is_some() {
        return into_payload;
    }
    let name = unraw(ident);
    let declarations = Ident::new("__declarations", Span::mixed_site());
    let fields = encode.fields.iter().map(|field| {
        let wire = &field.name;
        let (optional, ty) = match super::validate::option_inner(field.ty) {
            Some(inner) if field.skip_none => (true, inner),
            _ => (false, field.ty),
        };
        quote!((#wire, #optional, (&&&#p::Probe::<#ty>::NEW).type_fn()))
    });
    quote! {
        #into_payload

        #[automatically_derived]
        impl #impl_generics #p::TypeScript for #ident #ty_generics #where_clause {
            fn typescript(#declarations: &mut #p::Declarations) -> ::std::string::String {
                #[allow(unused_imports)]
                use #p::{ViaTsRs as _, ViaTypeScript as _, ViaUnknown as _};
                #p::Declarations::declare(#declarations, #name, ::core::any::type_name::<Self>(), |#declarations| {
                    #p::describe::object(#name, &[#(#fields),*], #declarations)
                })
            }
        }
    }
}

/// The field count `serialize_struct` is told: the fields always written,
/// plus one for each `skip_none` field that is `Some`.
fn count(encode: &Encode) -> TokenStream {
    let always = encode.fields.iter().filter(|f| !f.skip_none).count();
    let maybe: Vec<TokenStream> = encode
        .fields
        .iter()
        .filter(|f| f.skip_none)
        .map(|f| {
            let member = f.member;
            quote!(::core::primitive::usize::from(::core::option::Option::is_some(&self.#member)))
        })
        .collect();
    let always = (always > 0 || maybe.is_empty()).then(|| proc_macro2::Literal::usize_unsuffixed(always));
    let terms = always.into_iter().map(|lit| quote!(#lit)).chain(maybe);
    quote!(#(#terms)+*)
}

/// Impls that never run, emitted with errors so that uses of the type do
/// not add "not `Serialize`" or "not `Encode`" errors to them. No
/// `Serialize` when the type has one already (`has_serialize`): the error
/// about it is the only one.
pub(crate) fn fallback(input: &DeriveInput, args: &EncodeArgs, has_serialize: bool) -> TokenStream {
    let krate = crate_path(args.krate.as_ref());
    let p = quote!(#krate::__private);
    let serde = quote!(#p::serde);
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let serializer_ty = serializer_param(&input.generics);
    let serialize = (!has_serialize).then(|| {
        quote! {
            #[automatically_derived]
            impl #impl_generics #serde::Serialize for #ident #ty_generics #where_clause {
                fn serialize<#serializer_ty>(&self, _: #serializer_ty) -> ::core::result::Result<#serializer_ty::Ok, #serializer_ty::Error>
                where
                    #serializer_ty: #serde::Serializer,
                {
                    ::core::unreachable!()
                }
            }
        }
    });
    quote! {
        #serialize

        #[automatically_derived]
        impl #impl_generics #p::Encode for #ident #ty_generics #where_clause {}
    }
}

/// The name of the serializer type parameter: `__S`, or `__S` with a
/// number when the struct has a parameter of that name (type parameters
/// are not hygienic).
fn serializer_param(generics: &syn::Generics) -> Ident {
    let taken = |name: &str| generics.type_params().any(|p| p.ident == name);
    let name = (0..)
        .map(|n| if n == 0 { "__S".to_owned() } else { format!("__S{n}") })
        .find(|name| !taken(name))
        .expect("a struct has finitely many type parameters");
    Ident::new(&name, Span::call_site())
}
