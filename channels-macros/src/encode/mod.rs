//! `#[derive(Encode)]`: `serde::Serialize` for a chosen subset of a
//! struct's fields, renamed and skipped when `None` as asked, and
//! `Encode` on top of it, as `@derive {Jason.Encoder, only: [..]}` does in
//! Elixir. The `Serialize` impl is the type's only one: a second one is an
//! error that says what to do instead (`conflict`).

mod case;
mod conflict;
mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

/// Where the derive was written, as the compiler tells it: what the
/// source shows before it that its input no longer does.
pub(crate) struct CallSite {
    /// A serde `Serialize` derived before `Encode`, as written.
    pub(crate) serialize_before: Option<String>,
    /// The `Encode` token.
    pub(crate) span: proc_macro2::Span,
}

impl CallSite {
    /// The derive being expanded, read from its source file.
    pub(crate) fn of_expansion() -> Self {
        CallSite {
            serialize_before: conflict::sibling_serialize(proc_macro::Span::call_site()),
            span: proc_macro2::Span::call_site(),
        }
    }
}

pub(crate) fn derive(input: TokenStream, call_site: Option<CallSite>) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = crate::common::Errors::default();
    let args = parse::parse(&input, &mut errors);
    let mut has_serialize = conflict::check(&input, &mut errors);
    if let Some(CallSite { serialize_before: Some(path), span }) = &call_site {
        errors.push(conflict::sibling_error(path, *span));
        has_serialize = true;
    }
    match validate::validate(&input, &args, &mut errors) {
        Some(encode) if !errors.has_errors() => expand::expand(&encode),
        _ => {
            let mut out = expand::fallback(&input, &args, has_serialize);
            out.extend(errors.into_error().map(|e| e.to_compile_error()));
            out
        }
    }
}
