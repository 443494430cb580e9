//! Generating the `Channel` impl.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::Channel;
use crate::common::crate_path;

/// The impl block as written (minus `#[handle_in]`) and, when the socket is
/// known, the `Channel` impl. With `has_errors` the `Channel` impl routes
/// only what validated, so the errors come without follow-up errors.
pub(crate) fn expand(channel: &Channel, has_errors: bool) -> TokenStream {
    let item = &channel.item;
    let Some(socket) = &channel.socket else {
        return quote!(#item);
    };
    let krate = crate_path(channel.krate.as_ref());
    let p = quote!(#krate::__private);
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;

    let hygienic = |name: &str| Ident::new(name, Span::mixed_site());
    let topic = hygienic("__topic");
    let payload = hygienic("__payload");
    let socket_var = hygienic("__socket");
    let event = hygienic("__event");
    let value = hygienic("__value");
    let error = hygienic("__error");

    let join_body = match &channel.join {
        Some(join) => {
            let params = &join.params;
            let from_payload = quote_spanned! {params.span()=> <#params as #p::FromPayload>::from_payload };
            let socket_arg = join.socket.then(|| quote!(, #socket_var));
            // Located at the return type: "`X` is not a join result" is
            // reported there.
            let output = Ident::new("__output", Span::mixed_site().located_at(join.output_span));
            quote! {
                let #value = match #from_payload(#payload) {
                    ::core::result::Result::Ok(#value) => #value,
                    ::core::result::Result::Err(#error) => return #p::invalid_join_params(&#error),
                };
                let #output = Self::join(#topic, #value #socket_arg).await;
                #p::IntoJoin::into_join(#output)
            }
        }
        None => {
            // Only reached with errors reported: keeps the rest checkable.
            quote! {
                let _ = (#topic, #payload, #socket_var);
                ::core::unreachable!()
            }
        }
    };

    let arms = channel.handlers.iter().map(|handler| {
        let event_lit = &handler.event;
        let method = &handler.method;
        let ty = &handler.payload;
        let from_payload = quote_spanned! {ty.span()=> <#ty as #p::FromPayload>::from_payload };
        // Located at the return type: "`X` is not a reply" is reported there.
        let output = Ident::new("__output", Span::mixed_site().located_at(handler.output_span));
        let socket_arg = handler.socket.then(|| quote!(, #socket_var));
        quote! {
            #event_lit => match #from_payload(#payload) {
                ::core::result::Result::Ok(#value) => {
                    let #output = Self::#method(self, #value #socket_arg).await;
                    #p::IntoReply::into_reply(#output)
                }
                ::core::result::Result::Err(#error) => {
                    ::core::result::Result::Ok(#p::Reply::invalid_payload(&#error))
                }
            },
        }
    });
    let handle_in_body = if channel.handlers.is_empty() {
        quote! {
            let _ = (#event, #payload, #socket_var);
            ::core::result::Result::Ok(#p::Reply::unknown_event())
        }
    } else {
        quote! {
            match #event {
                #(#arms)*
                _ => ::core::result::Result::Ok(#p::Reply::unknown_event()),
            }
        }
    };
    // With errors, mention the rejected methods so they are not reported
    // as dead code on top of the errors.
    let mention = has_errors.then(|| {
        let rejected = &channel.rejected;
        quote! { #(let _ = Self::#rejected;)* }
    });

    quote! {
        #item

        impl #impl_generics #p::Channel for #self_ty #where_clause {
            type Socket = #socket;

            async fn join(
                #topic: #p::Topic,
                #payload: #p::Payload,
                #socket_var: &mut #p::Socket<#socket>,
            ) -> ::core::result::Result<#p::JoinResult<Self>, ::std::string::String> {
                #mention
                #join_body
            }

            async fn handle_in(
                &mut self,
                #event: &str,
                #payload: #p::Payload,
                #socket_var: &mut #p::Socket<#socket>,
            ) -> ::core::result::Result<#p::Reply, ::std::string::String> {
                #handle_in_body
            }
        }
    }
}
