//! `#[derive(Encode)]`: `Encode` (and, unless `impl_serialize = false`,
//! `Serialize`) for a chosen subset of a struct's fields, renamed and
//! skipped when `None` as asked, as `@derive {Jason.Encoder, only: [..]}`
//! does in Elixir.

mod case;
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
    let args = parse::parse(&input, &mut errors);
    match validate::validate(&input, &args, &mut errors) {
        Some(encode) if !errors.has_errors() => expand::expand(&encode),
        _ => {
            let mut out = expand::fallback(&input, &args);
            out.extend(errors.into_error().map(|e| e.to_compile_error()));
            out
        }
    }
}
