//! Signed tokens for socket authentication, in the manner of
//! `Phoenix.Token`: sign some data with a secret and a salt when the user
//! logs in, hand the token to the page, verify it in `connect`.
//!
//! A token is readable by anyone who has it (it is signed, not encrypted),
//! cannot be altered without the secret, and expires after the `max_age`
//! given when verifying.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! use std::time::Duration;
//! use phx_channels::token::{TokenError, Tokens};
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
        let mut key = [0; 32];
        derive_key(secret, salt.as_bytes(), ITERATIONS, &mut key);
        Tokens { key }
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

/// PBKDF2-HMAC-SHA256 (RFC 8018 §5.2), the derivation of Plug.Crypto's
/// `KeyGenerator`, so a secret and salt give the key Phoenix would.
fn derive_key(secret: &[u8], salt: &[u8], iterations: u32, key: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(secret, salt, iterations, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sha256_key(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> String {
        let mut key = vec![0; len];
        derive_key(password, salt, iterations, &mut key);
        hex(&key)
    }

    #[test]
    fn pbkdf2_sha256_matches_rfc_7914_test_vectors() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256, the whole 64-byte outputs.
        assert_eq!(
            sha256_key(b"passwd", b"salt", 1, 64),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        assert_eq!(
            sha256_key(b"Password", b"NaCl", 80_000, 64),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
             a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        );
    }

    /// RFC 6070's inputs and iteration counts (that RFC gives SHA-1 outputs;
    /// these are the SHA-256 ones, which tokens use).
    #[test]
    fn pbkdf2_sha256_matches_the_rfc_6070_inputs() {
        let cases: [(&[u8], &[u8], u32, &str); 5] = [
            (b"password", b"salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
            (b"password", b"salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
            (b"password", b"salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9",
            ),
            (b"pass\0word", b"sa\0lt", 4096, "89b69d0516f829893c696226650a8687"),
        ];
        for (password, salt, iterations, expected) in cases {
            assert_eq!(sha256_key(password, salt, iterations, expected.len() / 2), expected, "c = {iterations}");
        }
    }

    /// RFC 6070 §2 exactly as published (PBKDF2-HMAC-SHA1), through the same
    /// crate and the same generic function the SHA-256 keys come from.
    #[test]
    fn pbkdf2_matches_rfc_6070_test_vectors() {
        let cases: [(&[u8], &[u8], u32, &str); 5] = [
            (b"password", b"salt", 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
            (b"password", b"salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
            (b"password", b"salt", 4096, "4b007901b765489abead49d926f721d065a429c1"),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
            ),
            (b"pass\0word", b"sa\0lt", 4096, "56fa6aa75548099dcc37d7f03425e0c3"),
        ];
        for (password, salt, iterations, expected) in cases {
            let mut key = vec![0; expected.len() / 2];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut key);
            assert_eq!(hex(&key), expected, "c = {iterations}");
        }
    }

    /// RFC 6070's longest vector, 16 777 216 iterations, in SHA-1 and SHA-256.
    #[test]
    #[ignore = "about 170 s in a debug build; run with --ignored (or --release)"]
    fn pbkdf2_matches_the_rfc_6070_vector_of_16_777_216_iterations() {
        let mut key = [0; 20];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"password", b"salt", 16_777_216, &mut key);
        assert_eq!(hex(&key), "eefe3d61cd4da4e4e9945b3d6ba2158c2634e984");
        assert_eq!(
            sha256_key(b"password", b"salt", 16_777_216, 32),
            "cf81c66fe8cfc04d1f31ecb65dab4089f7f179e89b3b0bcb17ad10e3ac6eba46"
        );
    }

    #[test]
    fn keys_are_derived_as_phoenix_does_with_1000_iterations() {
        // Plug.Crypto.KeyGenerator.generate(secret, salt): PBKDF2-HMAC-SHA256,
        // 1000 iterations, 32 bytes (checked against Python's hashlib).
        let tokens = Tokens::new(b"a secret of at least 32 bytes, from config!", "user socket");
        assert_eq!(hex(&tokens.key), "8e6e931044baaa0798ee2b05040d75187d90c1c004772c2d7ec4cb77583c257b");
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
