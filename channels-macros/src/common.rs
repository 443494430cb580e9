//! Helpers shared by the three macros: error accumulation, the `crate = path`
//! override and "did you mean" suggestions.

use proc_macro2::TokenStream;
use quote::quote;

/// Collects independent errors so one compile reports all of them.
#[derive(Default)]
pub(crate) struct Errors {
    error: Option<syn::Error>,
}

impl Errors {
    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.error {
            Some(existing) => existing.combine(error),
            None => self.error = Some(error),
        }
    }

    /// Records an error at `tokens` with `message`.
    pub(crate) fn push_spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records the error of `result`, if any, and returns its value.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// Whether any error was recorded.
    pub(crate) fn has_errors(&self) -> bool {
        self.error.is_some()
    }

    /// The recorded errors, if any.
    pub(crate) fn into_error(self) -> Option<syn::Error> {
        self.error
    }
}

/// The path generated code reaches the runtime through: `::phx_channels` unless
/// overridden with `crate = path`.
pub(crate) fn crate_path(custom: Option<&syn::Path>) -> TokenStream {
    match custom {
        Some(path) => quote!(#path),
        None => quote!(::phx_channels),
    }
}

/// [`crate_path`], with the default path located at `span` so errors about
/// the type it starts are reported there.
pub(crate) fn crate_path_at(custom: Option<&syn::Path>, span: proc_macro2::Span) -> TokenStream {
    match custom {
        Some(path) => quote!(#path),
        None => quote::quote_spanned!(span=> ::phx_channels),
    }
}

/// An identifier as written, without a leading `r#`.
pub(crate) fn unraw(ident: &proc_macro2::Ident) -> String {
    let s = ident.to_string();
    match s.strip_prefix("r#") {
        Some(rest) => rest.to_owned(),
        None => s,
    }
}

/// Edit distance between two strings, counting a swap of two adjacent
/// characters as one edit (optimal string alignment).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(name, candidates) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("content", "content"), 0);
        assert_eq!(edit_distance("contnet", "content"), 1);
        assert_eq!(edit_distance("onyl", "only"), 1);
        assert_eq!(edit_distance("conten", "content"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let fields = ["content", "user_id", "inserted_at"];
        assert_eq!(suggest("contnet", fields), Some("content"));
        assert_eq!(suggest("userid", fields), Some("user_id"));
        assert_eq!(suggest("zzz", fields), None);
        assert_eq!(did_you_mean("contents", fields), "; did you mean `content`?");
        assert_eq!(did_you_mean("x", fields), "");
    }

    #[test]
    fn unraw_strips_raw_prefix() {
        let ident: proc_macro2::Ident = syn::parse_quote!(r#type);
        assert_eq!(unraw(&ident), "type");
        let ident: proc_macro2::Ident = syn::parse_quote!(plain);
        assert_eq!(unraw(&ident), "plain");
    }
}
