//! Signed tokens for socket authentication, in the manner of
//! `Phoenix.Token`: sign some data with a secret and a salt when the user
//! logs in, hand the token to the page, verify it in `connect`.
//!
//! A token is readable by anyone who has it (it is signed, not encrypted),
//! cannot be altered without the secret, and expires after the `max_age`
//! given when verifying.
//!
//! ```
//! use std::time::Duration;
//! use channels_runtime::token::{TokenError, Tokens};
//!
//! let tokens = Tokens::new(b"a secret of at least 32 bytes, from config!", "user socket");
//! let token = tokens.sign(&42_u64).unwrap();
//! assert_eq!(tokens.verify::<u64>(&token, Duration::from_secs(86_400)), Ok(42));
//!
//! let other_salt = Tokens::new(b"a secret of at least 32 bytes, from config!", "password reset");
//! assert_eq!(other_salt.verify::<u64>(&token, Duration::from_secs(86_400)), Err(TokenError::Invalid));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Phoenix's key generator derives keys with 1000 PBKDF2 iterations.
const ITERATIONS: u32 = 1000;

/// Signs and verifies tokens for one purpose (the salt).
///
/// Key derivation is deliberately slow, so make one `Tokens` per salt at
/// start-up and share it.
#[derive(Clone)]
pub struct Tokens {
    key: [u8; 32],
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token, altered, or signed with another secret or salt.
    #[error("invalid token")]
    Invalid,
    /// Signed longer ago than the `max_age` allowed.
    #[error("expired token")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Signed<T> {
    data: T,
    /// Milliseconds since the Unix epoch.
    signed: u64,
}

impl Tokens {
    /// Tokens signed with a key derived from `secret` (at least 32 random
    /// bytes, kept out of source control) and `salt` (one per purpose, so a
    /// token made for one purpose is worthless for another).
    pub fn new(secret: &[u8], salt: &str) -> Self {
        Tokens { key: pbkdf2_sha256(secret, salt.as_bytes(), ITERATIONS) }
    }

    /// Signs `data`, timestamped now.
    pub fn sign<T: Serialize>(&self, data: &T) -> Result<String, serde_json::Error> {
        self.sign_at(data, SystemTime::now())
    }

    /// Signs `data` as if at `signed_at` (for tests of expiry).
    pub fn sign_at<T: Serialize>(&self, data: &T, signed_at: SystemTime) -> Result<String, serde_json::Error> {
        let signed = millis(signed_at);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Signed { data, signed })?);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()).finalize().into_bytes());
        Ok(format!("{body}.{mac}"))
    }

    /// Verifies a token and returns its data, if it was signed with this
    /// secret and salt no longer than `max_age` ago.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, max_age: Duration) -> Result<T, TokenError> {
        let (body, mac) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Invalid)?;
        // Constant-time comparison.
        self.mac(body.as_bytes()).verify_slice(&mac).map_err(|_| TokenError::Invalid)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Invalid)?;
        let signed: Signed<T> = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        let age = millis(SystemTime::now()).saturating_sub(signed.signed);
        if u128::from(age) > max_age.as_millis() {
            return Err(TokenError::Expired);
        }
        Ok(signed.data)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

fn millis(t: SystemTime) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// PBKDF2-HMAC-SHA256 for one 32-byte block (RFC 8018 §5.2).
fn pbkdf2_sha256(secret: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prf = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    let mut u = {
        let mut mac = prf.clone();
        mac.update(salt);
        mac.update(&1u32.to_be_bytes());
        mac.finalize().into_bytes()
    };
    let mut out: [u8; 32] = u.into();
    for _ in 1..iterations {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes();
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn pbkdf2_matches_rfc_7914_test_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 ("passwd", "salt", c = 1), first 32 bytes.
        let key = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(key[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn round_trip_with_structured_data() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Claims {
            user_id: u64,
            role: String,
        }
        let tokens = Tokens::new(SECRET, "user socket");
        let claims = Claims { user_id: 7, role: "admin".into() };
        let token = tokens.sign(&claims).unwrap();
        assert_eq!(tokens.verify::<Claims>(&token, Duration::from_secs(60)).unwrap(), claims);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = Tokens::new(SECRET, "s");
        let old = tokens.sign_at(&1, SystemTime::now() - Duration::from_secs(120)).unwrap();
        assert_eq!(tokens.verify::<i32>(&old, Duration::from_secs(60)), Err(TokenError::Expired));
        assert_eq!(tokens.verify::<i32>(&old, Duration::from_secs(180)), Ok(1));
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let tokens = Tokens::new(SECRET, "s");
        let token = tokens.sign(&"alice").unwrap();
        let (body, mac) = token.split_once('.').unwrap();
        let forged_body =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"data":"mallory","signed":{}}}"#, millis(SystemTime::now())));
        let day = Duration::from_secs(86_400);
        for bad in [
            format!("{forged_body}.{mac}"),
            format!("{body}.{}", &mac[1..]),
            format!("{body}x.{mac}"),
            body.to_owned(),
            String::new(),
            "..".to_owned(),
        ] {
            assert_eq!(tokens.verify::<String>(&bad, day), Err(TokenError::Invalid), "{bad}");
        }
        assert_eq!(
            Tokens::new(b"another secret entirely, 32 bytes", "s").verify::<String>(&token, day),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.verify::<u64>(&token, day), Err(TokenError::Invalid), "wrong data type");
    }
}
