//! Generating the `Channel` impl.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::{Channel, Handler, Kind};
use crate::common::{crate_path, crate_path_at};

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
            let from_payload = from_payload(params, channel.krate.as_ref());
            let socket_arg = join.socket.then(|| quote!(, #socket_var));
            let await_ = join.is_async.then(|| quote!(.await));
            // Located at the return type: "`X` is not a join result" is
            // reported there.
            let output = Ident::new("__output", Span::mixed_site().located_at(join.output_span));
            quote! {
                let #value = match #from_payload(#payload) {
                    ::core::result::Result::Ok(#value) => #value,
                    ::core::result::Result::Err(#error) => {
                        return ::core::result::Result::Err(#p::invalid_join_params(#error));
                    }
                };
                let #output = Self::join(#topic, #value #socket_arg) #await_;
                #p::IntoJoin::into_join(#output)
            }
        }
        // Only reached with errors reported: keeps the rest checkable.
        None => quote!(::core::unreachable!()),
    };
    // A parameter the body does not use is `_`, as a person would write it.
    let param = |used: bool, name: &Ident| if used { quote!(#name) } else { quote!(_) };
    let join_params = {
        let used = channel.join.is_some();
        let topic = param(used, &topic);
        let payload = param(used, &payload);
        let socket_param = param(channel.join.as_ref().is_some_and(|j| j.socket), &socket_var);
        quote! {
            #topic: #p::Topic,
            #payload: #p::Payload,
            #socket_param: &mut #p::Socket<#socket>,
        }
    };

    // Calls a handler with the decoded payload and turns what it returns
    // into a reply: the `let` and the reply expression, so a caller can
    // `return` the latter.
    let call = |handler: &Handler| {
        let method = &handler.method;
        let socket_arg = handler.socket.then(|| quote!(, #socket_var));
        let await_ = handler.is_async.then(|| quote!(.await));
        // Located at the return type: "`X` is not a reply" is reported there.
        let output = Ident::new("__output", Span::mixed_site().located_at(handler.output_span));
        (
            quote!(let #output = Self::#method(self, #value #socket_arg) #await_;),
            quote!(#p::IntoReply::into_reply(#output)),
        )
    };
    // One match arm per method: a method with several events gets
    // `"a" | "b" =>`.
    let event_arms = |wanted: fn(&Kind) -> Option<&syn::LitStr>, on_error: &TokenStream| {
        let mut grouped: Vec<(Vec<&syn::LitStr>, &Handler)> = Vec::new();
        for handler in &channel.handlers {
            let Some(event_lit) = wanted(&handler.kind) else { continue };
            match grouped.iter_mut().find(|(_, h)| h.method == handler.method) {
                Some((events, _)) => events.push(event_lit),
                None => grouped.push((vec![event_lit], handler)),
            }
        }
        grouped
            .into_iter()
            .map(|(events, handler)| {
                let ty = &handler.payload;
                let from_payload = from_payload(ty, channel.krate.as_ref());
                let (call, reply) = call(handler);
                quote! {
                    #(#events)|* => match #from_payload(#payload) {
                        ::core::result::Result::Ok(#value) => {
                            #call
                            #reply
                        }
                        ::core::result::Result::Err(#error) => #on_error,
                    },
                }
            })
            .collect::<Vec<_>>()
    };
    let takes_socket = |wanted: fn(&Kind) -> bool| channel.handlers.iter().any(|h| wanted(&h.kind) && h.socket);

    let in_arms = event_arms(
        |k| match k {
            Kind::In(e) => Some(e),
            _ => None,
        },
        &quote!(::core::result::Result::Ok(#p::Rejection::into_reply(#error))),
    );
    let handle_in_params = {
        let used = !in_arms.is_empty();
        let event = param(used, &event);
        let payload = param(used, &payload);
        let socket_param = param(takes_socket(|k| matches!(k, Kind::In(_))), &socket_var);
        quote! {
            #event: &str,
            #payload: #p::Payload,
            #socket_param: &mut #p::Socket<#socket>,
        }
    };
    let handle_in_body = if in_arms.is_empty() {
        quote!(::core::result::Result::Ok(#p::Reply::unknown_event()))
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
            ) -> ::core::result::Result<#p::Reply, #p::Crash> {
                match #event {
                    #(#out_arms)*
                    _ => {
                        #p::push_unchanged(#socket_var, #event, #payload);
                        ::core::result::Result::Ok(#p::Reply::none())
                    }
                }
            }
        }
    });
    let history = channel.history.as_ref().map(|history| {
        let size = history.size.map_or_else(|| quote!(#p::History::DEFAULT.size()), |n| quote!(#n as usize));
        let age = history
            .age
            .map_or_else(|| quote!(#p::History::DEFAULT.age()), |ms| quote!(::core::time::Duration::from_millis(#ms)));
        let max_bytes = history.max_bytes.map(|n| quote!(.max_bytes(#n as usize)));
        quote! {
            const HISTORY: ::core::option::Option<#p::History> =
                ::core::option::Option::Some(#p::History::new(#size, #age) #max_bytes);
        }
    });
    let intercepts = (!channel.intercepts.is_empty()).then(|| {
        let events = &channel.intercepts;
        quote!(const INTERCEPTS: &'static [&'static str] = &[#(#events),*];)
    });
    // The events `handle_in` answers: the metrics' `event` label.
    let handled: Vec<&syn::LitStr> = channel
        .handlers
        .iter()
        .filter_map(|h| match &h.kind {
            Kind::In(event) => Some(event),
            _ => None,
        })
        .collect();
    let events = (!handled.is_empty()).then(|| quote!(const EVENTS: &'static [&'static str] = &[#(#handled),*];));

    let info_arms: Vec<TokenStream> = channel
        .handlers
        .iter()
        .filter(|h| matches!(h.kind, Kind::Info))
        .map(|handler| {
            let ty = &handler.payload;
            let (call, reply) = call(handler);
            quote! {
                let #info = match #info.downcast::<#ty>() {
                    ::core::result::Result::Ok(#value) => {
                        #call
                        return #reply;
                    }
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
            ) -> ::core::result::Result<#p::Reply, #p::Crash> {
                #(#info_arms)*
                #p::unhandled_info(&#info, #socket_var)
            }
        }
    });

    let terminate = channel.terminate.as_ref().map(|t| {
        let method = &t.method;
        let socket_arg = t.socket.then(|| quote!(, #socket_var));
        let await_ = t.is_async.then(|| quote!(.await));
        let socket_param = param(t.socket, &socket_var);
        quote! {
            async fn terminate(&mut self, #reason: &#p::Terminate, #socket_param: &mut #p::Socket<#socket>) {
                Self::#method(self, #reason #socket_arg) #await_
            }
        }
    });

    let describe = describe(channel, &p);

    // With errors, mention the rejected methods so they are not reported
    // as dead code on top of the errors.
    let mention = has_errors.then(|| {
        let rejected = &channel.rejected;
        quote! { #(let _ = Self::#rejected;)* }
    });

    quote! {
        #item

        #[automatically_derived]
        impl #impl_generics #p::Channel for #self_ty #where_clause {
            type Socket = #socket;

            async fn join(
                #join_params
            ) -> ::core::result::Result<(#p::Payload, Self), #p::JoinError> {
                #mention
                #join_body
            }

            async fn handle_in(
                &mut self,
                #handle_in_params
            ) -> ::core::result::Result<#p::Reply, #p::Crash> {
                #handle_in_body
            }

            #history
            #intercepts
            #events
            #handle_out
            #handle_info
            #terminate
            #describe
        }
    }
}

/// The function that decodes a payload argument of type `ty`, located at
/// it so a type that cannot be a payload is reported there: `FromPayload`,
/// or, for an argument written `Valid<T>`, a function that asks for `T`'s
/// rules first (`T` without `validator::Validate` is then the first error,
/// not "`Valid<T>` cannot be a payload").
fn from_payload(ty: &syn::Type, krate: Option<&syn::Path>) -> TokenStream {
    let krate = crate_path_at(krate, ty.span());
    if is_valid(ty) {
        quote_spanned! {ty.span()=> <#ty as #krate::__private::ValidPayload>::valid_from_payload }
    } else {
        quote_spanned! {ty.span()=> <#ty as #krate::__private::FromPayload<_>>::from_payload }
    }
}

/// Whether `ty` is written `Valid<T>` or `Valid<T, M>` (any path to it).
fn is_valid(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => path.path.segments.last().is_some_and(|last| {
            last.ident == "Valid"
                && matches!(&last.arguments, syn::PathArguments::AngleBracketed(args) if (1..=2).contains(&args.args.len()))
        }),
        syn::Type::Group(group) => is_valid(&group.elem),
        syn::Type::Paren(paren) => is_valid(&paren.elem),
        _ => false,
    }
}

/// `Channel::describe`: the types of the join, each `#[handle_in]` event
/// and the declared `out` events, found by the probes of
/// `__private` (so a type without TypeScript is `unknown`, never an error).
fn describe(channel: &Channel, p: &TokenStream) -> TokenStream {
    let name = channel_name(&channel.item.self_ty);
    let type_fn = |ty: &TokenStream| quote!((&&&#p::Probe::<#ty>::NEW).type_fn());
    let unknown = quote!(#p::describe::unknown);
    let join = match &channel.join {
        Some(join) => {
            let params = &join.params;
            let joined = match &join.output {
                Some(output) => {
                    quote!({ let __joined = (&&#p::Probe::<#output>::NEW).join_response(); (&&&__joined).type_fn() })
                }
                None => unknown.clone(),
            };
            quote! {
                [{ let (__params, _) = (&&#p::Probe::<#params>::NEW).payload(); (&&&__params).type_fn() }, #joined, #p::describe::refusal]
            }
        }
        None => quote!([#unknown, #unknown, #p::describe::refusal]),
    };
    let events = channel.handlers.iter().filter_map(|handler| {
        let Kind::In(event) = &handler.kind else { return None };
        let payload = &handler.payload;
        let replies = match &handler.output {
            Some(output) => quote!((&&#p::Probe::<#output>::NEW).replies()),
            None => quote!((#p::Probe::<#p::describe::Untyped>::NEW, #p::Probe::<#p::describe::Untyped>::NEW)),
        };
        Some(quote! {
            {
                let (__payload, __rejection) = (&&#p::Probe::<#payload>::NEW).payload();
                let (__reply, __error) = #replies;
                #p::EventShape {
                    event: #event,
                    payload: (&&&__payload).type_fn(),
                    reply: (&&&__reply).type_fn(),
                    errors: [(&&&__error).type_fn(), __rejection],
                }
            }
        })
    });
    let out = match &channel.out {
        Some(events) => {
            let events = events.iter().map(|out| {
                let event = &out.event;
                let ty = &out.ty;
                let ty = type_fn(&quote!(#ty));
                quote!((#event, #ty))
            });
            quote!(::core::option::Option::Some(::std::vec::Vec::from([#(#events),*])))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        fn describe() -> #p::ChannelShape {
            #[allow(unused_imports)]
            use #p::{
                JoinOf as _, JoinOfOther as _, PayloadOf as _, PayloadOfOther as _, RepliesOf as _,
                RepliesOfOther as _, ViaTsRs as _, ViaTypeScript as _, ViaUnknown as _,
            };
            #p::ChannelShape {
                name: #name,
                join: #join,
                events: ::core::option::Option::Some(::std::vec::Vec::from([#(#events),*])),
                out: #out,
            }
        }
    }
}

/// The channel's name in TypeScript: its type's name, without generics.
fn channel_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(path) => match path.path.segments.last() {
            Some(segment) => crate::common::unraw(&segment.ident),
            None => "Channel".to_owned(),
        },
        syn::Type::Group(group) => channel_name(&group.elem),
        syn::Type::Paren(paren) => channel_name(&paren.elem),
        _ => "Channel".to_owned(),
    }
}
