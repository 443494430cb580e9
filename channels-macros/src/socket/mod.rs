//! `socket!`: a unit struct and its route table.
//!
//! ```text
//! socket! {
//!     #![crate = path]            // optional
//!     /// docs and attributes
//!     pub UserSocket {
//!         channel "comments:*" => CommentsChannel;
//!     }
//! }
//! ```

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

pub(crate) fn socket(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<parse::SocketInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let (socket, errors) = validate::validate(input);
    let mut out = expand::expand(&socket);
    if let Some(errors) = errors {
        out.extend(errors.to_compile_error());
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
    fn expands_to_struct_and_routes() {
        let out = squash(super::socket(quote! {
            /// Docs.
            pub(crate) UserSocket {
                channel "comments:*" => crate::chans::Comments;
                channel "lobby" => Lobby;
            }
        }));
        assert!(out.contains("#[doc=r\"Docs.\"]pub(crate)structUserSocket;"), "{out}");
        assert!(out.contains("impl::phx_channels::__private::RoutesforUserSocket"), "{out}");
        assert!(
            out.contains("::phx_channels::__private::Route::<Self>::new::<crate::chans::Comments>(\"comments:*\")"),
            "{out}"
        );
        assert!(out.contains("::phx_channels::__private::Route::<Self>::new::<Lobby>(\"lobby\")"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn crate_override_and_errors_keep_valid_routes() {
        let out = squash(super::socket(quote! {
            #![crate = my_channels]
            S {
                channel "a:*" => A;
                channel "a:b" => B;
            }
        }));
        assert!(out.contains("my_channels::__private::Route::<Self>::new::<A>"), "{out}");
        assert!(!out.contains("new::<B>"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
    }
}
