//! Serving HTTPS and WSS directly, with rustls: [`Tls`], given to
//! [`Endpoint::tls`](crate::endpoint::Endpoint::tls).
//!
//! A [`Tls`] holds the certificate chain and key the server presents, and
//! can swap them while the server runs ([`Tls::reload`] re-reads the PEM
//! files, [`Tls::set_pem`] takes new ones): each TLS handshake uses the
//! certificate current at that moment, connections already open keep
//! theirs. A certificate renewed on disk (certbot, cert-manager) is
//! served from the next handshake on, without a restart.
//!
//! The crypto is rustls's `ring` provider, and the protocols rustls
//! enables by default (TLS 1.3 and 1.2, no older). ALPN offers
//! `http/1.1`: WebSocket upgrades and LongPoll use it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate PEM holds no certificate (`-----BEGIN CERTIFICATE-----`),
    /// or one that does not parse.
    #[error("no certificate in the certificate PEM{0}")]
    NoCertificate(String),
    /// The key PEM holds no private key (PKCS#8, PKCS#1 or SEC1), or one
    /// that does not parse.
    #[error("no private key in the key PEM{0}")]
    NoKey(String),
    /// rustls refused the pair: a key it cannot sign with, or one that is
    /// not the certificate's.
    #[error("the key does not go with the certificate: {0}")]
    Mismatch(String),
    /// [`Tls::reload`] on a [`Tls`] made from PEM in memory: there are no
    /// files to re-read (use [`Tls::set_pem`]).
    #[error("this certificate was given as PEM, not files: use `Tls::set_pem` to change it")]
    NoFiles,
}

/// The certificate chain and key an endpoint serves HTTPS and WSS with,
/// swappable while it serves. Cheap to clone: clones share the
/// certificate, so a clone kept by the app reloads the endpoint's.
///
/// ```no_run
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::tls::Tls;
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = Tls::from_pem_files("/etc/ssl/example.org/fullchain.pem", "/etc/ssl/example.org/privkey.pem")?;
/// // ... `Endpoint::new().tls(tls.clone())`, then, once the files were
/// // renewed (on SIGHUP, or every few hours):
/// tls.reload()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the PEM came from, for `reload`.
    files: Option<(PathBuf, PathBuf)>,
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.inner.files).finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// The chain and key in `cert_chain` and `key` (PEM), checked to go
/// together.
fn certified(cert_chain: &[u8], key: &[u8], provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate(format!(": {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(String::new()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey(format!(": {e}")))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch(e.to_string()))
}

impl Tls {
    /// A certificate chain (the server's certificate first, then any
    /// intermediates: certbot's `fullchain.pem`) and its private key
    /// (PKCS#8, PKCS#1 or SEC1), read from PEM files. [`Tls::reload`]
    /// reads them again.
    pub fn from_pem_files(cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Tls, TlsError> {
        let (cert_chain, key) = (cert_chain.into(), key.into());
        let provider = provider();
        let current = certified(&read(&cert_chain)?, &read(&key)?, &provider)?;
        Ok(Tls::with(Some((cert_chain, key)), current, provider))
    }

    /// A certificate chain and its private key, as PEM in memory (from a
    /// secret store). [`Tls::set_pem`] changes them.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Tls, TlsError> {
        let provider = provider();
        let current = certified(cert_chain, key, &provider)?;
        Ok(Tls::with(None, current, provider))
    }

    fn with(files: Option<(PathBuf, PathBuf)>, current: CertifiedKey, provider: Arc<CryptoProvider>) -> Tls {
        Tls { inner: Arc::new(Inner { files, current: RwLock::new(Arc::new(current)), provider }) }
    }

    /// Reads the PEM files again and serves what they hold from the next
    /// TLS handshake on; connections already open keep their certificate.
    /// On an error (a file half-written, a key that is not the
    /// certificate's) the certificate served does not change.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some((cert_chain, key)) = &self.inner.files else { return Err(TlsError::NoFiles) };
        let certified = certified(&read(cert_chain)?, &read(key)?, &self.inner.provider)?;
        *self.inner.current.write() = Arc::new(certified);
        tracing::info!(cert_chain = %cert_chain.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Serves this chain and key (PEM) from the next TLS handshake on; on
    /// an error the certificate served does not change.
    pub fn set_pem(&self, cert_chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let certified = certified(cert_chain, key, &self.inner.provider)?;
        *self.inner.current.write() = Arc::new(certified);
        Ok(())
    }

    /// The acceptor the server wraps each accepted connection in.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = ServerConfig::builder_with_provider(self.inner.provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring's default provider supports the default protocol versions"))
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(self.inner.clone())));
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

/// Gives every handshake the certificate current at that moment.
struct Current(Arc<Inner>);

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn bad_pem_is_a_clear_error_and_keeps_what_is_served() {
        let (cert, key) = pair("a.test");
        let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let before = tls.inner.current.read().clone();
        assert!(matches!(tls.set_pem(b"", key.as_bytes()), Err(TlsError::NoCertificate(_))));
        assert!(matches!(tls.set_pem(cert.as_bytes(), b"junk"), Err(TlsError::NoKey(_))));
        let (_, other_key) = pair("b.test");
        let mismatch = tls.set_pem(cert.as_bytes(), other_key.as_bytes());
        assert!(matches!(mismatch, Err(TlsError::Mismatch(_))), "{mismatch:?}");
        assert!(matches!(tls.reload(), Err(TlsError::NoFiles)));
        assert!(Arc::ptr_eq(&before, &tls.inner.current.read()), "a failed change serves the old certificate");
        let missing = Tls::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert_eq!(missing.to_string().split(':').next(), Some("cannot read /nonexistent/cert.pem"));
    }
}
