//! Generating the socket struct and its `Routes` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::Socket;
use crate::common::{crate_path, crate_path_at};

pub(crate) fn expand(socket: &Socket) -> TokenStream {
    let Socket { krate, attrs, vis, ident, routes } = socket;
    let krate = crate_path(krate.as_ref());
    let routes = routes.iter().map(|route| {
        let ty = &route.ty;
        let pattern = &route.pattern;
        // Spanned at the user's type, so "`X` is not a channel" and socket
        // mismatches point at it.
        // `Route::<Self>` fixes the socket, so a channel of another socket
        // is a mismatch at the channel's type.
        quote_spanned! {ty.span()=> #krate::__private::Route::<Self>::new::<#ty>(#pattern) }
    });
    // Spanned at the socket's name, where a missing `impl Connect` is
    // reported.
    let krate = crate_path_at(socket.krate.as_ref(), ident.span());
    let routes_impl = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #krate::__private::Routes for #ident {
            const ROUTES: &'static [#krate::__private::Route<Self>] = &[#(#routes),*];
        }
    };
    quote! {
        #(#attrs)*
        #vis struct #ident;

        #routes_impl
    }
}
