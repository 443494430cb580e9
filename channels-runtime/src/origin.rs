//! `check_origin`: which web pages may open a socket.
//!
//! Browsers send an `Origin` header with every WebSocket handshake, and any
//! page on the web can try to open a socket to your server with the
//! visitor's cookies (cross-site WebSocket hijacking). Checking the origin
//! stops that. As in Phoenix, it is on by default: a handshake from a page
//! whose host is not the server's own host is refused with HTTP 403.
//! Requests without an `Origin` (non-browser clients) are allowed.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use phx_channels::origin::CheckOrigin;
//!
//! let check = CheckOrigin::allow(["https://example.com", "//*.example.net"]).unwrap();
//! assert!(check.allows(Some("https://example.com"), "api.internal"));
//! assert!(check.allows(Some("http://chat.example.net:8080"), "api.internal"));
//! assert!(!check.allows(Some("https://evil.com"), "api.internal"));
//! assert!(check.allows(None, "api.internal"));
//! ```

use std::fmt;
use std::sync::Arc;

/// The origin policy of a socket.
#[derive(Clone, Default)]
pub enum CheckOrigin {
    /// The default: the origin's host must be the host the request was made
    /// to (its `Host` header), or a loopback host (`localhost`, `127.0.0.1`,
    /// `[::1]`). Scheme and port are not compared, as in Phoenix.
    #[default]
    SameHost,
    /// The origin must match one of these patterns.
    Allow(Vec<OriginPattern>),
    /// Any origin. Only for sockets that authenticate every connection by
    /// other means (a token in the params, not a cookie).
    Off,
    /// A predicate of your own, given the `Origin` value.
    Custom(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl CheckOrigin {
    /// Allows the origins matching `patterns`. A pattern is a full origin
    /// (`https://example.com`, which also fixes port 443), or parts of one:
    /// `//example.com` means any scheme and port; a host `*.example.com`
    /// matches `example.com` and every subdomain.
    pub fn allow<I, P>(patterns: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let patterns = patterns.into_iter().map(|p| OriginPattern::parse(p.as_ref())).collect::<Result<_, _>>()?;
        Ok(CheckOrigin::Allow(patterns))
    }

    /// Whether a handshake with this `Origin` (if any), made to `host` (the
    /// request's `Host` header, port included or not), may proceed.
    pub fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            CheckOrigin::Off => true,
            CheckOrigin::Custom(check) => check(origin),
            CheckOrigin::SameHost => match Origin::parse(origin) {
                Some(o) => is_loopback(&o.host) || o.host.eq_ignore_ascii_case(strip_port(host)),
                None => false,
            },
            CheckOrigin::Allow(patterns) => match Origin::parse(origin) {
                Some(o) => patterns.iter().any(|p| p.matches(&o)),
                None => false,
            },
        }
    }
}

impl fmt::Debug for CheckOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOrigin::SameHost => f.write_str("SameHost"),
            CheckOrigin::Allow(p) => f.debug_tuple("Allow").field(p).finish(),
            CheckOrigin::Off => f.write_str("Off"),
            CheckOrigin::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]" || host == "::1"
}

/// `example.com:4000` → `example.com`; `[::1]:4000` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A parsed `Origin` header: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(origin: &str) -> Option<Origin> {
        let (scheme, rest) = origin.split_once("://")?;
        let (host, port) = split_host_port(rest.trim_end_matches('/'))?;
        if host.is_empty() {
            return None;
        }
        let port = port.or(match scheme {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        });
        Some(Origin { scheme: scheme.to_ascii_lowercase(), host: host.to_ascii_lowercase(), port })
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let port_at = if s.starts_with('[') { s.find(']').map(|end| end + 1)? } else { s.rfind(':').unwrap_or(s.len()) };
    let (host, port) = s.split_at(port_at);
    match port.strip_prefix(':') {
        Some(p) => Some((host, Some(p.parse().ok()?))),
        None if port.is_empty() => Some((host, None)),
        None => None,
    }
}

/// One allowed origin; missing parts are wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

/// An origin pattern that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin pattern `{0}`: expected `scheme://host[:port]` or `//host[:port]`")]
pub struct InvalidOrigin(String);

impl OriginPattern {
    /// Parses `https://example.com`, `//example.com`, `//*.example.com:4000`.
    pub fn parse(pattern: &str) -> Result<Self, InvalidOrigin> {
        let invalid = || InvalidOrigin(pattern.to_owned());
        let (scheme, rest) = match pattern.split_once("//") {
            Some(("", rest)) => (None, rest),
            Some((scheme, rest)) => (Some(scheme.strip_suffix(':').ok_or_else(invalid)?.to_ascii_lowercase()), rest),
            None => return Err(invalid()),
        };
        let (host, port) = split_host_port(rest.trim_end_matches('/')).ok_or_else(invalid)?;
        if host.is_empty() {
            return Err(invalid());
        }
        let port = port.or(match scheme.as_deref() {
            Some("http" | "ws") => Some(80),
            Some("https" | "wss") => Some(443),
            _ => None,
        });
        Ok(OriginPattern { scheme, host: host.to_ascii_lowercase(), port })
    }

    fn matches(&self, origin: &Origin) -> bool {
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => origin.host == domain || origin.host.ends_with(&format!(".{domain}")),
            None => origin.host == self.host,
        };
        host_ok
            && self.scheme.as_ref().is_none_or(|s| *s == origin.scheme)
            && self.port.is_none_or(|p| Some(p) == origin.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_by_default_plus_loopback() {
        let check = CheckOrigin::default();
        assert!(check.allows(None, "example.com"));
        assert!(check.allows(Some("https://example.com"), "example.com:4000"));
        assert!(check.allows(Some("http://EXAMPLE.com:8080"), "example.com"));
        assert!(check.allows(Some("http://localhost:3000"), "example.com"));
        assert!(check.allows(Some("http://127.0.0.1:5173"), "10.0.0.1:4000"));
        assert!(check.allows(Some("http://[::1]:5173"), "[::1]:4000"));
        assert!(!check.allows(Some("https://evil.com"), "example.com"));
        assert!(!check.allows(Some("https://example.com.evil.com"), "example.com"));
        assert!(!check.allows(Some("null"), "example.com"));
        assert!(!check.allows(Some("file://"), "example.com"));
    }

    #[test]
    fn patterns() {
        let check = CheckOrigin::allow(["https://example.com", "//*.example.net", "http://dev.local:4000"]).unwrap();
        assert!(check.allows(Some("https://example.com"), "x"));
        assert!(!check.allows(Some("http://example.com"), "x"), "scheme is fixed");
        assert!(!check.allows(Some("https://example.com:8443"), "x"), "a full URL implies port 443");
        assert!(check.allows(Some("https://example.net"), "x"));
        assert!(check.allows(Some("ws://a.b.example.net:1"), "x"));
        assert!(!check.allows(Some("https://badexample.net"), "x"));
        assert!(check.allows(Some("http://dev.local:4000"), "x"));
        assert!(!check.allows(Some("http://dev.local:4001"), "x"));
        assert!(CheckOrigin::allow(["example.com"]).is_err());
        assert!(CheckOrigin::allow(["https://"]).is_err());
        assert!(CheckOrigin::allow(["//host:notaport"]).is_err());
    }

    #[test]
    fn off_and_custom() {
        assert!(CheckOrigin::Off.allows(Some("https://anything"), "x"));
        let custom = CheckOrigin::Custom(Arc::new(|o: &str| o.ends_with(".test")));
        assert!(custom.allows(Some("http://a.test"), "x"));
        assert!(!custom.allows(Some("http://a.prod"), "x"));
    }
}
