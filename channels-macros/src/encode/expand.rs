//! Generating the `Serialize` impl.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::DeriveInput;

use super::validate::Encode;
use crate::common::{crate_path, unraw};

pub(crate) fn expand(encode: &Encode) -> TokenStream {
    let krate = crate_path(encode.krate);
    let serde = quote!(#krate::__private::serde);
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
    let count = proc_macro2::Literal::usize_unsuffixed(encode.fields.len());
    let mut_ = (!encode.fields.is_empty()).then(|| quote!(mut));
    let fields = encode.fields.iter().map(|field| {
        let member = field.member;
        let name = &field.name;
        // Spanned at the field's type: a type that is not `Serialize` is
        // reported on the field.
        quote_spanned! {field.ty.span()=>
            #serde::ser::SerializeStruct::serialize_field(&mut #state, #name, &self.#member)?;
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #serde::Serialize for #ident #ty_generics #where_clause {
            fn serialize<#serializer_ty>(&self, #serializer: #serializer_ty) -> ::core::result::Result<#serializer_ty::Ok, #serializer_ty::Error>
            where
                #serializer_ty: #serde::Serializer,
            {
                let #mut_ #state = #serde::Serializer::serialize_struct(#serializer, #name, #count)?;
                #(#fields)*
                #serde::ser::SerializeStruct::end(#state)
            }
        }
    }
}

/// A `Serialize` impl that never runs, emitted with errors so that uses of
/// the type do not add "not `Serialize`" errors to them.
pub(crate) fn fallback(input: &DeriveInput, krate: Option<&syn::Path>) -> TokenStream {
    let krate = crate_path(krate);
    let serde = quote!(#krate::__private::serde);
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let serializer_ty = serializer_param(&input.generics);
    quote! {
        impl #impl_generics #serde::Serialize for #ident #ty_generics #where_clause {
            fn serialize<#serializer_ty>(&self, _: #serializer_ty) -> ::core::result::Result<#serializer_ty::Ok, #serializer_ty::Error>
            where
                #serializer_ty: #serde::Serializer,
            {
                ::core::unreachable!()
            }
        }
    }
}

/// The name of `serialize`'s serializer type parameter: `__S`, or `__S`
/// with a number when the struct has a parameter of that name (type
/// parameters are not hygienic).
fn serializer_param(generics: &syn::Generics) -> Ident {
    let taken = |name: &str| generics.type_params().any(|p| p.ident == name);
    let name = (0..)
        .map(|n| if n == 0 { "__S".to_owned() } else { format!("__S{n}") })
        .find(|name| !taken(name))
        .expect("a struct has finitely many type parameters");
    Ident::new(&name, Span::call_site())
}
