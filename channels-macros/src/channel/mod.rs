//! `#[channel(socket = S)]`: implements `Channel` from an inherent impl with
//! `async fn join` and `#[handle_in("event")]` methods.

mod expand;
mod join_response;
mod parse;
mod validate;

use proc_macro2::TokenStream;

pub(crate) fn channel(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = crate::common::Errors::default();
    let args = parse::parse_args(args, &mut errors);
    let item = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            // Not even an item: leave it as written for rustc to report.
            errors.push(error);
            let mut out = item;
            out.extend(errors.into_error().map(|e| e.to_compile_error()));
            return out;
        }
    };
    let imp = match parse::into_inherent_impl(item) {
        Ok(imp) => imp,
        Err(rejected) => {
            let (item, error) = *rejected;
            errors.push(error);
            let mut out = quote::quote!(#item);
            out.extend(errors.into_error().map(|e| e.to_compile_error()));
            return out;
        }
    };
    let channel = validate::validate(args, imp, &mut errors);
    let mut out = expand::expand(&channel, errors.has_errors());
    if let Some(error) = errors.into_error() {
        out.extend(error.to_compile_error());
    }
    out
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn squash(tokens: proc_macro2::TokenStream) -> String {
        tokens.to_string().split_whitespace().collect()
    }

    #[test]
    fn expands_to_channel_impl() {
        let out = squash(super::channel(
            quote!(socket = UserSocket),
            quote! {
                impl<T: Send + 'static> Room<T> {
                    async fn join(topic: Topic, params: Params) -> Join<Self> { todo!() }
                    #[handle_in("add")]
                    async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Reply { todo!() }
                    fn helper(&self) {}
                }
            },
        ));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(!out.contains("handle_in(\"add\")"), "{out}");
        assert!(out.contains("impl<T:Send+'static>::phx_channels::__private::ChannelforRoom<T>"), "{out}");
        assert!(out.contains("typeSocket=UserSocket;"), "{out}");
        assert!(out.contains("<Paramsas::phx_channels::__private::FromPayload<_>>::from_payload"), "{out}");
        assert!(out.contains("Self::join(__topic,__value)"), "{out}");
        assert!(out.contains("\"add\"=>match<NewCommentas::phx_channels::__private::FromPayload<_>>"), "{out}");
        assert!(out.contains("Self::add(self,__value,__socket)"), "{out}");
        assert!(
            out.contains("_=>::core::result::Result::Ok(::phx_channels::__private::Reply::unknown_event())"),
            "{out}"
        );
    }
}
