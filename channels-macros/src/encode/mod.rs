//! `#[derive(Encode)]`: `Serialize` for a chosen subset of a struct's
//! fields, as `@derive {Jason.Encoder, only: [..]}` does in Elixir.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = crate::common::Errors::default();
    let args = parse::parse_attrs(&input.attrs, &mut errors);
    match validate::validate(&input, &args, &mut errors) {
        Some(encode) if !errors.has_errors() => expand::expand(&encode),
        _ => {
            let mut out = expand::fallback(&input, args.krate.as_ref());
            out.extend(errors.into_error().map(|e| e.to_compile_error()));
            out
        }
    }
}
