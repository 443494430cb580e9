//! Generating the `Channel` impl.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::{Channel, Kind};
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
    let info = hygienic("__info");
    let reason = hygienic("__reason");

    let join_body = match &channel.join {
        Some(join) => {
            let params = &join.params;
            let from_payload = quote_spanned! {params.span()=> <#params as #p::FromPayload>::from_payload };
            let socket_arg = join.socket.then(|| quote!(, #socket_var));
            let await_ = join.is_async.then(|| quote!(.await));
            // Located at the return type: "`X` is not a join result" is
            // reported there.
            let output = Ident::new("__output", Span::mixed_site().located_at(join.output_span));
            quote! {
                let #value = match #from_payload(#payload) {
                    ::core::result::Result::Ok(#value) => #value,
                    ::core::result::Result::Err(#error) => return #p::invalid_join_params(&#error),
                };
                let #output = Self::join(#topic, #value #socket_arg) #await_;
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

    let call = |method: &Ident, receiver: TokenStream, value: &Ident, socket: bool, is_async: bool, span: Span| {
        let socket_arg = socket.then(|| quote!(, #socket_var));
        let await_ = is_async.then(|| quote!(.await));
        // Located at the return type: "`X` is not a reply" is reported there.
        let output = Ident::new("__output", Span::mixed_site().located_at(span));
        quote! {
            let #output = Self::#method(#receiver #value #socket_arg) #await_;
            #p::IntoReply::into_reply(#output)
        }
    };
    let event_arms = |wanted: fn(&Kind) -> Option<&syn::LitStr>, on_error: &TokenStream| {
        channel
            .handlers
            .iter()
            .filter_map(|handler| Some((wanted(&handler.kind)?, handler)))
            .map(|(event_lit, handler)| {
                let ty = &handler.payload;
                let from_payload = quote_spanned! {ty.span()=> <#ty as #p::FromPayload>::from_payload };
                let body =
                    call(&handler.method, quote!(self,), &value, handler.socket, handler.is_async, handler.output_span);
                quote! {
                    #event_lit => match #from_payload(#payload) {
                        ::core::result::Result::Ok(#value) => { #body }
                        ::core::result::Result::Err(#error) => #on_error,
                    },
                }
            })
            .collect::<Vec<_>>()
    };

    let in_arms = event_arms(
        |k| match k {
            Kind::In(e) => Some(e),
            _ => None,
        },
        &quote!(::core::result::Result::Ok(#p::Reply::invalid_payload(&#error))),
    );
    let handle_in_body = if in_arms.is_empty() {
        quote! {
            let _ = (#event, #payload, #socket_var);
            ::core::result::Result::Ok(#p::Reply::unknown_event())
        }
    } else {
        quote! {
            match #event {
                #(#in_arms)*
                _ => ::core::result::Result::Ok(#p::Reply::unknown_event()),
            }
        }
    };

    let out_arms = event_arms(
        |k| match k {
            Kind::Out(e) => Some(e),
            _ => None,
        },
        &quote!(::core::result::Result::Err(#p::undecodable_broadcast(#event, &#error))),
    );
    let handle_out = (!out_arms.is_empty()).then(|| {
        quote! {
            async fn handle_out(
                &mut self,
                #event: &str,
                #payload: #p::Payload,
                #socket_var: &mut #p::Socket<#socket>,
            ) -> ::core::result::Result<#p::Reply, ::std::string::String> {
                match #event {
                    #(#out_arms)*
                    _ => {
                        #socket_var.push_payload(#event, #payload);
                        ::core::result::Result::Ok(#p::Reply::none())
                    }
                }
            }
        }
    });
    let intercepts = (!channel.intercepts.is_empty()).then(|| {
        let events = &channel.intercepts;
        quote!(const INTERCEPTS: &'static [&'static str] = &[#(#events),*];)
    });

    let info_arms: Vec<TokenStream> = channel
        .handlers
        .iter()
        .filter(|h| matches!(h.kind, Kind::Info))
        .map(|handler| {
            let ty = &handler.payload;
            let body =
                call(&handler.method, quote!(self,), &value, handler.socket, handler.is_async, handler.output_span);
            quote! {
                let #info = match #info.downcast::<#ty>() {
                    ::core::result::Result::Ok(#value) => return { #body },
                    ::core::result::Result::Err(#info) => #info,
                };
            }
        })
        .collect();
    let handle_info = (!info_arms.is_empty()).then(|| {
        quote! {
            async fn handle_info(
                &mut self,
                #info: #p::Info,
                #socket_var: &mut #p::Socket<#socket>,
            ) -> ::core::result::Result<#p::Reply, ::std::string::String> {
                #(#info_arms)*
                #p::unhandled_info(&#info, #socket_var)
            }
        }
    });

    let terminate = channel.terminate.as_ref().map(|t| {
        let method = &t.method;
        let socket_arg = t.socket.then(|| quote!(, #socket_var));
        let await_ = t.is_async.then(|| quote!(.await));
        quote! {
            async fn terminate(&mut self, #reason: &#p::Terminate, #socket_var: &mut #p::Socket<#socket>) {
                let _ = &#socket_var;
                Self::#method(self, #reason #socket_arg) #await_
            }
        }
    });

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

            #intercepts
            #handle_out
            #handle_info
            #terminate
        }
    }
}
