//! How a `wss://` endpoint's certificate is checked: [`Tls`], given to
//! [`SocketBuilder::tls`](crate::SocketBuilder::tls).

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why [`Tls::roots_pem`] could not use the PEM it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM holds no certificate (`-----BEGIN CERTIFICATE-----`).
    #[error("no certificate in the PEM")]
    NoCertificate,
    /// A certificate does not parse, or cannot be a root.
    #[error("a certificate in the PEM cannot be a root: {0}")]
    BadCertificate(String),
}

/// What a client trusts when it connects to `wss://` (or `https://`): by
/// default Mozilla's roots (the `webpki-roots` crate), as a browser would;
/// on request only the app's own roots (a private CA), or any rustls
/// [`ClientConfig`] (client certificates, the system's roots through
/// `rustls-native-certs`, ...).
///
/// ```no_run
/// use phx_channels_client::{Socket, Tls};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // A server whose certificate a company CA signed:
/// let ca = std::fs::read("company-ca.pem")?;
/// let socket = Socket::builder("wss://chat.internal/socket").tls(Tls::roots_pem(&ca)?).connect();
/// # drop(socket); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    pub(crate) config: Arc<ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("alpn", &self.config.alpn_protocols).finish_non_exhaustive()
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls::webpki_roots()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config(roots: RootCertStore) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring's default provider supports the default protocol versions"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Tls {
    /// Mozilla's roots (the default): what a browser trusts.
    pub fn webpki_roots() -> Tls {
        // Built once: every socket and every reconnect shares it.
        static WEBPKI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        let config = WEBPKI.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            config(roots)
        });
        Tls { config: config.clone() }
    }

    /// Only the roots in `pem` (one or more certificates): a server whose
    /// certificate a private CA signed, and nothing else.
    pub fn roots_pem(pem: &[u8]) -> Result<Tls, TlsError> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|e| TlsError::BadCertificate(e.to_string()))?;
            roots.add(certificate).map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(Tls { config: config(roots) })
    }

    /// Any rustls configuration: client certificates (mutual TLS), the
    /// system's roots, a custom verifier.
    pub fn from_config(config: Arc<ClientConfig>) -> Tls {
        Tls { config }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_pem_refuses_what_is_not_a_certificate() {
        assert_eq!(Tls::roots_pem(b"").unwrap_err(), TlsError::NoCertificate);
        assert_eq!(
            Tls::roots_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err(),
            TlsError::NoCertificate
        );
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(Tls::roots_pem(junk), Err(TlsError::BadCertificate(_))));
        assert!(Arc::ptr_eq(&Tls::webpki_roots().config, &Tls::default().config), "built once");
    }
}
