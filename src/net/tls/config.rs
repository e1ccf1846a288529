//! TLS configurations: a server's (certificate chain and key, optional client-certificate
//! verification, ALPN, protocol versions) and a client's (trusted roots: the system's or a CA
//! file; optional client certificate; verification off only when asked for by name). Both are
//! cheap to clone (shared, immutable); a session keeps the configuration it started with.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::verify::{InsecureVerifier, Verifier};
use super::TlsError;
use crate::error::Error;

/// The ALPN protocol the HTTP server and client speak.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Lowest TLS version a configuration accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => BOTH,
            TlsVersion::Tls13 => ONLY13,
        }
    }
}

/// The crypto provider: ring (no cmake or nasm needed to build it).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn config_err(reason: impl Into<String>) -> TlsError {
    TlsError::new(Error::TLS_CONFIG, reason)
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| config_err(format!("{what} {}: {e}", path.display())))
}

/// Every certificate of a PEM text, in order; at least one.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_err(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(config_err(format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        config_err(format!(
            "private key: {e} (expected a PEM PKCS#8, PKCS#1 RSA or SEC1 EC key)"
        ))
    })
}

fn parse_roots(pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(pem, what)? {
        roots
            .add(c)
            .map_err(|e| config_err(format!("{what}: {e}")))?;
    }
    Ok(roots)
}

/// The system's roots, or why there are none, once read.
static SYSTEM_ROOTS: OnceLock<Result<Arc<RootCertStore>, TlsError>> = OnceLock::new();

/// The system's trusted roots (Debian's ca-certificates, as libcurl uses them; `SSL_CERT_FILE`
/// and `SSL_CERT_DIR` override), read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    SYSTEM_ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(config_err(format!(
                    "no system CA certificates found (is ca-certificates installed?){why}"
                )));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// How a server is configured for TLS. `cert_chain_pem` is the server's certificate followed
/// by its intermediates; `key_pem` its private key (RSA or ECDSA; PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, Debug, Default)]
pub struct TlsServerOptions {
    pub cert_chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by one of these CAs (mTLS).
    pub client_ca_pem: Option<Vec<u8>>,
    /// With `client_ca_pem`: clients without a certificate are let in too (one they do
    /// present must still verify).
    pub client_cert_optional: bool,
    /// ALPN protocols offered, most preferred first; empty means `http/1.1`.
    pub alpn: Vec<Vec<u8>>,
    pub min_version: TlsVersion,
}

impl TlsServerOptions {
    /// Options from PEM files.
    pub fn from_files(cert_chain: &Path, key: &Path) -> Result<TlsServerOptions, TlsError> {
        Ok(TlsServerOptions {
            cert_chain_pem: read_file(cert_chain, "certificate file")?,
            key_pem: read_file(key, "key file")?,
            ..Default::default()
        })
    }

    /// Requires client certificates signed by the CA(s) in the PEM file `path`.
    pub fn client_ca_file(mut self, path: &Path) -> Result<TlsServerOptions, TlsError> {
        self.client_ca_pem = Some(read_file(path, "client CA file")?);
        Ok(self)
    }
}

/// A server's TLS configuration (shared, immutable; clones are cheap).
#[derive(Clone)]
pub struct TlsServerConfig {
    pub(crate) inner: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServerConfig")
    }
}

impl TlsServerConfig {
    /// Checks and builds a configuration: the key must match the certificate.
    pub fn new(o: &TlsServerOptions) -> Result<TlsServerConfig, TlsError> {
        let chain = parse_certs(&o.cert_chain_pem, "certificate chain")?;
        let key = parse_key(&o.key_pem)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(o.min_version.versions())
            .map_err(|e| config_err(e.to_string()))?;
        let builder = match &o.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let roots = Arc::new(parse_roots(pem, "client CA")?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let v = if o.client_cert_optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(
                    v.build()
                        .map_err(|e| config_err(format!("client CA: {e}")))?,
                )
            }
        };
        let mut cfg = builder
            .with_single_cert(chain, key)
            .map_err(|e| config_err(format!("certificate and key: {e}")))?;
        cfg.alpn_protocols = if o.alpn.is_empty() {
            vec![ALPN_HTTP1.to_vec()]
        } else {
            o.alpn.clone()
        };
        // Stateless resumption tickets (keys rotate every few hours) beside the default
        // in-memory session cache.
        cfg.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| config_err(format!("session tickets: {e}")))?;
        Ok(TlsServerConfig {
            inner: Arc::new(cfg),
        })
    }

    /// A configuration from PEM files (`cert_chain` and `key`).
    pub fn from_files(cert_chain: &Path, key: &Path) -> Result<TlsServerConfig, TlsError> {
        TlsServerConfig::new(&TlsServerOptions::from_files(cert_chain, key)?)
    }
}

/// How a client is configured for TLS.
#[derive(Clone, Debug, Default)]
pub struct TlsClientOptions {
    /// Trusted CAs (PEM); `None` means the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and key (PEM) for servers that ask for one.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// ALPN protocols offered; empty means `http/1.1`.
    pub alpn: Vec<Vec<u8>>,
    pub min_version: TlsVersion,
    /// Accept any certificate, for any name: no protection against an attacker in the
    /// middle. For tests against throwaway certificates only.
    pub dangerous_skip_verification: bool,
}

impl TlsClientOptions {
    /// Trusts the CA(s) of the PEM file `path` instead of the system's roots.
    pub fn ca_file(mut self, path: &Path) -> Result<TlsClientOptions, TlsError> {
        self.ca_pem = Some(read_file(path, "CA file")?);
        Ok(self)
    }
}

/// A client's TLS configuration (shared, immutable; clones are cheap).
#[derive(Clone)]
pub struct TlsClientConfig {
    pub(crate) inner: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClientConfig")
    }
}

impl TlsClientConfig {
    /// Builds a configuration. With the system's roots this reads the system's CA store the
    /// first time in the process (a few milliseconds of blocking file reads).
    pub fn new(o: &TlsClientOptions) -> Result<TlsClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(o.min_version.versions())
            .map_err(|e| config_err(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if o.dangerous_skip_verification {
            Arc::new(InsecureVerifier::new(provider()))
        } else {
            let roots = match &o.ca_pem {
                Some(pem) => Arc::new(parse_roots(pem, "CA")?),
                None => system_roots()?,
            };
            Arc::new(Verifier::new(roots, provider())?)
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut cfg = match &o.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(parse_certs(chain, "client certificate")?, parse_key(key)?)
                .map_err(|e| config_err(format!("client certificate and key: {e}")))?,
        };
        cfg.alpn_protocols = if o.alpn.is_empty() {
            vec![ALPN_HTTP1.to_vec()]
        } else {
            o.alpn.clone()
        };
        Ok(TlsClientConfig {
            inner: Arc::new(cfg),
        })
    }

    /// Verification against the system's roots (the default of the HTTP client), built once
    /// per process.
    pub fn system() -> Result<TlsClientConfig, TlsError> {
        static SYSTEM: OnceLock<Result<TlsClientConfig, TlsError>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| TlsClientConfig::new(&TlsClientOptions::default()))
            .clone()
    }

    /// Whether `system()` returns at once: the system's store was read already (or failed to
    /// be). Until then `system()` reads files, which a loop's thread should leave to a worker.
    pub fn system_ready() -> bool {
        SYSTEM_ROOTS.get().is_some()
    }

    /// The same configuration with a session cache of its own (`entries` sessions): the HTTP
    /// client gives each origin one, so resumption is per origin.
    pub fn with_own_session_cache(&self, entries: usize) -> TlsClientConfig {
        let mut cfg = (*self.inner).clone();
        cfg.resumption = rustls::client::Resumption::in_memory_sessions(entries);
        TlsClientConfig {
            inner: Arc::new(cfg),
        }
    }
}
