//! Topic routing: which channel answers a join on which topic.
//!
//! A pattern is an exact topic (`"lobby"`) or a prefix ending in `*`
//! (`"comments:*"` matches `comments:` followed by anything, including
//! nothing). Routes are tried in declaration order and the first match
//! wins, as in a Phoenix socket module.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::router::TopicPattern;
//!
//! let comments = TopicPattern::new("comments:*");
//! assert!(comments.matches("comments:42"));
//! assert!(comments.matches("comments:"));
//! assert!(!comments.matches("comment:42"));
//! assert_eq!(comments.rest("comments:42"), Some("42"));
//! ```

use std::fmt;
use std::sync::Arc;

/// A validated topic pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPattern {
    text: &'static str,
    wildcard: bool,
}

impl TopicPattern {
    /// Parses a pattern. Usable in `const` context, which is how the
    /// `socket!` macro builds its route table.
    ///
    /// # Panics
    ///
    /// On an invalid pattern (empty, or `*` anywhere but at the end). The
    /// `socket!` macro rejects those at compile time with a proper error.
    pub const fn new(text: &'static str) -> Self {
        match Self::check(text) {
            Ok(wildcard) => TopicPattern { text, wildcard },
            Err(PatternError::Empty) => panic!("a topic pattern cannot be empty"),
            Err(PatternError::InnerWildcard) => panic!("`*` may only end a topic pattern"),
        }
    }

    /// Validates a pattern: `Ok(true)` for a wildcard pattern, `Ok(false)`
    /// for an exact one.
    pub const fn check(text: &str) -> Result<bool, PatternError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' && i + 1 != bytes.len() {
                return Err(PatternError::InnerWildcard);
            }
            i += 1;
        }
        Ok(bytes[bytes.len() - 1] == b'*')
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &'static str {
        self.text
    }

    /// The fixed part: the whole topic, or what precedes the `*`.
    pub fn prefix(&self) -> &'static str {
        if self.wildcard {
            &self.text[..self.text.len() - 1]
        } else {
            self.text
        }
    }

    /// Whether the pattern ends in `*`.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        if self.wildcard {
            topic.starts_with(self.prefix())
        } else {
            topic == self.text
        }
    }

    /// The part of `topic` the wildcard matched (`""` for exact patterns),
    /// or `None` if the topic does not match.
    pub fn rest<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.matches(topic).then(|| &topic[self.prefix().len()..])
    }

    /// Whether every topic this pattern matches is already matched by
    /// `earlier`, making this pattern unreachable behind it.
    pub fn is_shadowed_by(&self, earlier: &TopicPattern) -> bool {
        if earlier.wildcard {
            self.prefix().starts_with(earlier.prefix())
        } else {
            !self.wildcard && self.text == earlier.text
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

/// Why a topic pattern is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is `""`.
    Empty,
    /// A `*` stands before the end.
    InnerWildcard,
}

/// The topic a channel was joined on.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::router::{Topic, TopicPattern};
///
/// let topic = Topic::new("comments:42", &TopicPattern::new("comments:*"));
/// assert_eq!(topic.as_str(), "comments:42");
/// assert_eq!(topic.rest(), "42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    name: Arc<str>,
    rest_at: usize,
}

impl Topic {
    /// A topic joined through `pattern`. If the topic does not match,
    /// [`Topic::rest`] is the whole topic.
    pub fn new(name: impl Into<Arc<str>>, pattern: &TopicPattern) -> Self {
        let name = name.into();
        let rest_at = if pattern.matches(&name) { pattern.prefix().len() } else { 0 };
        Topic { name, rest_at }
    }

    /// The full topic, e.g. `comments:42`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What the route's `*` matched, e.g. `42` for `comments:42` joined
    /// through `comments:*`; empty for exact routes.
    pub fn rest(&self) -> &str {
        &self.name[self.rest_at..]
    }

    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.name
    }
}

impl std::ops::Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

/// Finds the first route whose pattern matches `topic`.
pub fn route<'r, T>(routes: &'r [(TopicPattern, T)], topic: &str) -> Option<&'r (TopicPattern, T)> {
    routes.iter().find(|(pattern, _)| pattern.matches(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_patterns() {
        let exact = TopicPattern::new("lobby");
        assert!(exact.matches("lobby"));
        assert!(!exact.matches("lobby:1"));
        assert!(!exact.matches("lobb"));
        assert_eq!(exact.rest("lobby"), Some(""));

        let wild = TopicPattern::new("room:*");
        assert!(wild.matches("room:"));
        assert!(wild.matches("room:a:b"));
        assert!(!wild.matches("room"));
        assert!(!wild.matches("roomX:1"));
        assert_eq!(wild.rest("room:lobby"), Some("lobby"));
        assert_eq!(wild.rest("nope"), None);

        let everything = TopicPattern::new("*");
        assert!(everything.matches(""));
        assert!(everything.matches("anything"));
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(TopicPattern::check(""), Err(PatternError::Empty));
        assert_eq!(TopicPattern::check("a*b"), Err(PatternError::InnerWildcard));
        assert_eq!(TopicPattern::check("**"), Err(PatternError::InnerWildcard));
        assert_eq!(TopicPattern::check("*:x"), Err(PatternError::InnerWildcard));
        assert_eq!(TopicPattern::check("a:*"), Ok(true));
        assert_eq!(TopicPattern::check("a:b"), Ok(false));
    }

    #[test]
    fn first_match_wins() {
        let routes =
            [(TopicPattern::new("rooms:lobby"), 1), (TopicPattern::new("rooms:*"), 2), (TopicPattern::new("*"), 3)];
        assert_eq!(route(&routes, "rooms:lobby").map(|r| r.1), Some(1));
        assert_eq!(route(&routes, "rooms:7").map(|r| r.1), Some(2));
        assert_eq!(route(&routes, "other").map(|r| r.1), Some(3));
        assert_eq!(route(&routes[..2], "other"), None);
    }

    #[test]
    fn shadowing() {
        let all_rooms = TopicPattern::new("room:*");
        assert!(TopicPattern::new("room:lobby").is_shadowed_by(&all_rooms));
        assert!(TopicPattern::new("room:vip:*").is_shadowed_by(&all_rooms));
        assert!(TopicPattern::new("room:*").is_shadowed_by(&all_rooms));
        assert!(!TopicPattern::new("room").is_shadowed_by(&all_rooms));
        assert!(!all_rooms.is_shadowed_by(&TopicPattern::new("room:lobby")));
        assert!(TopicPattern::new("lobby").is_shadowed_by(&TopicPattern::new("lobby")));
        assert!(!TopicPattern::new("lobby*").is_shadowed_by(&TopicPattern::new("lobby")));
    }

    #[test]
    fn topic_rest() {
        let t = Topic::new("comments:42", &TopicPattern::new("comments:*"));
        assert_eq!((t.as_str(), t.rest()), ("comments:42", "42"));
        let t = Topic::new("lobby", &TopicPattern::new("lobby"));
        assert_eq!(t.rest(), "");
    }
}
