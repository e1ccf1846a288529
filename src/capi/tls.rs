//! `aloop_tls_*`: TLS configurations for the HTTP server (certificate chain and key, optional
//! client-certificate verification) and the HTTP client (trusted roots, client certificate,
//! the explicitly named insecure mode). Configurations are immutable and bound to no loop:
//! one may serve several servers and clients, on any threads.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::handle::{self, Handle, Kind, LoopId};
use super::http_server::aloop_http_server_t;
use super::{guard, not_null, set_last_error};
use crate::error::Error;
use crate::net::tls::{
    TlsClientConfig, TlsClientOptions, TlsError, TlsServerConfig, TlsServerOptions, TlsVersion,
};

/// The TLS handshake failed (no common protocol or cipher, an alert from the peer, a
/// malformed handshake, the peer closed during it). `aloop_last_error_message` has the reason.
pub const ALOOP_E_TLS_HANDSHAKE: c_int = -10300;
/// The peer's certificate is not issued by a trusted CA.
pub const ALOOP_E_TLS_UNTRUSTED: c_int = -10301;
/// The peer's certificate is self-signed and not itself trusted.
pub const ALOOP_E_TLS_SELF_SIGNED: c_int = -10302;
/// The peer's certificate is valid, but not for the host name asked for.
pub const ALOOP_E_TLS_NAME_MISMATCH: c_int = -10303;
/// The peer's certificate has expired or is not valid yet.
pub const ALOOP_E_TLS_EXPIRED: c_int = -10304;
/// A TLS error after the handshake (a record that fails to decrypt, an unexpected message).
pub const ALOOP_E_TLS_PROTOCOL: c_int = -10305;
/// The peer sent plain, unencrypted data on a TLS connection.
pub const ALOOP_E_TLS_PLAINTEXT: c_int = -10306;
/// A TLS configuration could not be made (unreadable or invalid PEM, a key that does not
/// match its certificate, no usable trusted roots). `aloop_last_error_message` says which.
pub const ALOOP_E_TLS_CONFIG: c_int = -10307;

/// Lowest protocol version: TLS 1.2 (the default) or TLS 1.3.
pub const ALOOP_TLS_1_2: c_int = 0;
/// TLS 1.3 only.
pub const ALOOP_TLS_1_3: c_int = 1;

/// Options for `aloop_tls_server_config_new`; fill with `aloop_tls_server_options_init`
/// first. Each PEM input is a file (`*_file`, a path) or memory (`*_pem` and `*_pem_len`),
/// not both; everything is borrowed during the call only.
#[repr(C)]
pub struct aloop_tls_server_options_t {
    /// Path of the server's certificate followed by its intermediates (PEM). This or
    /// `cert_chain_pem` is required.
    pub cert_chain_file: *const c_char,
    /// The same chain in memory: `cert_chain_pem_len` bytes of PEM.
    pub cert_chain_pem: *const c_void,
    /// Length of `cert_chain_pem`, bytes.
    pub cert_chain_pem_len: usize,
    /// Path of its private key, RSA or ECDSA (PEM: PKCS#8, PKCS#1 or SEC1). This or `key_pem`
    /// is required.
    pub key_file: *const c_char,
    /// The same key in memory: `key_pem_len` bytes of PEM.
    pub key_pem: *const c_void,
    /// Length of `key_pem`, bytes.
    pub key_pem_len: usize,
    /// Path of CA certificates (PEM): when set, clients must present a certificate signed by
    /// one of them (mTLS).
    pub client_ca_file: *const c_char,
    /// The same CAs in memory: `client_ca_pem_len` bytes of PEM.
    pub client_ca_pem: *const c_void,
    /// Length of `client_ca_pem`, bytes.
    pub client_ca_pem_len: usize,
    /// Non-zero with a client CA: clients without a certificate are let in too (one that is
    /// presented must still verify).
    pub client_cert_optional: c_int,
    /// `ALOOP_TLS_1_2` (default: TLS 1.2 and 1.3) or `ALOOP_TLS_1_3`.
    pub min_version: c_int,
}

/// Options for `aloop_tls_client_config_new`; fill with `aloop_tls_client_options_init`
/// first. PEM inputs as in `aloop_tls_server_options_t`.
#[repr(C)]
pub struct aloop_tls_client_options_t {
    /// Path of the trusted CAs (PEM). Neither this nor `ca_pem` set: the system's roots
    /// (Debian's ca-certificates; `SSL_CERT_FILE` and `SSL_CERT_DIR` override), read once per
    /// process.
    pub ca_file: *const c_char,
    /// The trusted CAs in memory: `ca_pem_len` bytes of PEM.
    pub ca_pem: *const c_void,
    /// Length of `ca_pem`, bytes.
    pub ca_pem_len: usize,
    /// Path of a client certificate chain (PEM), for servers that ask for one; with its key.
    pub cert_chain_file: *const c_char,
    /// The same chain in memory: `cert_chain_pem_len` bytes of PEM.
    pub cert_chain_pem: *const c_void,
    /// Length of `cert_chain_pem`, bytes.
    pub cert_chain_pem_len: usize,
    /// Path of the client certificate's private key (PEM).
    pub key_file: *const c_char,
    /// The same key in memory: `key_pem_len` bytes of PEM.
    pub key_pem: *const c_void,
    /// Length of `key_pem`, bytes.
    pub key_pem_len: usize,
    /// `ALOOP_TLS_1_2` (default) or `ALOOP_TLS_1_3`.
    pub min_version: c_int,
    /// DANGEROUS. Non-zero: accept any certificate for any name, so anyone on the path can
    /// read and change the traffic. For tests against throwaway certificates only.
    pub insecure_skip_verify: c_int,
}

/// A server's TLS configuration (opaque, immutable). Owned by the caller of
/// `aloop_tls_server_config_new` until `aloop_tls_server_config_free`; servers using it keep
/// their own reference, so it may be freed right after being handed to them.
pub struct aloop_tls_server_config_t {
    pub(crate) config: TlsServerConfig,
}

impl Handle for aloop_tls_server_config_t {
    type C = aloop_tls_server_config_t;
    const KIND: Kind = Kind::TlsServerConfig;
}

/// A client's TLS configuration (opaque, immutable). Owned as `aloop_tls_server_config_t`.
pub struct aloop_tls_client_config_t {
    pub(crate) config: TlsClientConfig,
}

impl Handle for aloop_tls_client_config_t {
    type C = aloop_tls_client_config_t;
    const KIND: Kind = Kind::TlsClientConfig;
}

/// The server configuration behind `cfg` (shared).
pub(crate) fn server_config(
    cfg: *const aloop_tls_server_config_t,
) -> Result<TlsServerConfig, Error> {
    handle::with(cfg, |c: &aloop_tls_server_config_t| c.config.clone())
}

/// The client configuration behind `cfg` (shared).
pub(crate) fn client_config(
    cfg: *const aloop_tls_client_config_t,
) -> Result<TlsClientConfig, Error> {
    handle::with(cfg, |c: &aloop_tls_client_config_t| c.config.clone())
}

fn version(v: c_int) -> Result<TlsVersion, TlsError> {
    match v {
        ALOOP_TLS_1_2 => Ok(TlsVersion::Tls12),
        ALOOP_TLS_1_3 => Ok(TlsVersion::Tls13),
        _ => Err(TlsError::new(
            Error::INVALID,
            "min_version is not ALOOP_TLS_1_2 or ALOOP_TLS_1_3",
        )),
    }
}

/// A PEM input given as a file or as memory (not both), read during the call.
///
/// # Safety
/// `file` is NULL or a C string; `pem` is NULL or `len` readable bytes.
unsafe fn pem_input(
    file: *const c_char,
    pem: *const c_void,
    len: usize,
    what: &str,
) -> Result<Option<Vec<u8>>, TlsError> {
    match (file.is_null(), pem.is_null()) {
        (true, true) => Ok(None),
        (false, false) => Err(TlsError::new(
            Error::INVALID,
            format!("{what}: give a file or memory, not both"),
        )),
        (false, true) => {
            // SAFETY: a C string per the contract.
            let f = unsafe { CStr::from_ptr(file) }.to_bytes();
            let path = Path::new(std::ffi::OsStr::from_bytes(f));
            std::fs::read(path).map(Some).map_err(|e| {
                TlsError::new(Error::TLS_CONFIG, format!("{what} {}: {e}", path.display()))
            })
        }
        // SAFETY: `len` readable bytes per the contract.
        (true, false) => Ok(Some(
            unsafe { std::slice::from_raw_parts(pem.cast::<u8>(), len) }.to_vec(),
        )),
    }
}

/// A failure's code, with its reason kept for `aloop_last_error_message`.
fn failed(e: TlsError) -> c_int {
    set_last_error(&e.reason);
    e.code.code()
}

/// Hands a made configuration to C through `out` (non-NULL, checked by the caller), or
/// reports why it could not be made.
fn publish<T: Handle<C = T>>(made: Result<T, TlsError>, out: *mut *mut T) -> c_int {
    match made {
        Ok(config) => {
            let h = handle::register(LoopId::UNBOUND, Box::new(config));
            // SAFETY: out is non-NULL (checked by the caller) and writable.
            unsafe { out.write(h) };
            0
        }
        Err(e) => failed(e),
    }
}

/// Frees a configuration handle: NULL is ignored, a freed one is `ALOOP_E_STALE`.
fn free_config<T: Handle<C = T>>(cfg: *mut T) -> c_int {
    if cfg.is_null() {
        return 0;
    }
    match handle::take::<T>(cfg) {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

/// Fills `opts` with the defaults: every input NULL, TLS 1.2 and 1.3, no client
/// certificates asked for. 0, or `ALOOP_E_NULL`. Thread-safe.
#[no_mangle]
pub extern "C" fn aloop_tls_server_options_init(opts: *mut aloop_tls_server_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_tls_server_options_t {
                cert_chain_file: std::ptr::null(),
                cert_chain_pem: std::ptr::null(),
                cert_chain_pem_len: 0,
                key_file: std::ptr::null(),
                key_pem: std::ptr::null(),
                key_pem_len: 0,
                client_ca_file: std::ptr::null(),
                client_ca_pem: std::ptr::null(),
                client_ca_pem_len: 0,
                client_cert_optional: 0,
                min_version: ALOOP_TLS_1_2,
            })
        };
        0
    })
}

/// Makes a server configuration: the certificate chain and key (which must match), ALPN
/// `http/1.1`, session resumption (tickets and a session cache), and client-certificate
/// verification when a client CA is given. Reads the files during the call (blocking). On
/// success `*out` owns the configuration; on failure `*out` is not written and
/// `aloop_last_error_message` says what was wrong. Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID`
/// (an input given twice, an unknown `min_version`), `ALOOP_E_TLS_CONFIG`. Thread-safe.
#[no_mangle]
pub extern "C" fn aloop_tls_server_config_new(
    opts: *const aloop_tls_server_options_t,
    out: *mut *mut aloop_tls_server_config_t,
) -> c_int {
    guard(|| {
        not_null!(opts, out);
        // SAFETY: non-NULL, read during the call.
        let o = unsafe { &*opts };
        let make = || -> Result<TlsServerConfig, TlsError> {
            // SAFETY: the pointers of the options, per the struct's contract.
            let (chain, key, ca) = unsafe {
                (
                    pem_input(
                        o.cert_chain_file,
                        o.cert_chain_pem,
                        o.cert_chain_pem_len,
                        "certificate chain",
                    )?,
                    pem_input(o.key_file, o.key_pem, o.key_pem_len, "private key")?,
                    pem_input(
                        o.client_ca_file,
                        o.client_ca_pem,
                        o.client_ca_pem_len,
                        "client CA",
                    )?,
                )
            };
            let (Some(chain), Some(key)) = (chain, key) else {
                return Err(TlsError::new(
                    Error::NULL_ARG,
                    "a certificate chain and a key are required",
                ));
            };
            TlsServerConfig::new(&TlsServerOptions {
                cert_chain_pem: chain,
                key_pem: key,
                client_ca_pem: ca,
                client_cert_optional: o.client_cert_optional != 0,
                alpn: Vec::new(),
                min_version: version(o.min_version)?,
            })
        };
        publish(
            make().map(|config| aloop_tls_server_config_t { config }),
            out,
        )
    })
}

/// Frees a server configuration. Servers that were given it keep using it (they hold their
/// own reference). NULL is ignored (0); a configuration freed already gives `ALOOP_E_STALE`.
/// Thread-safe, but not while another thread is passing the same configuration to a call.
#[no_mangle]
pub extern "C" fn aloop_tls_server_config_free(cfg: *mut aloop_tls_server_config_t) -> c_int {
    guard(|| free_config(cfg))
}

/// Fills `opts` with the defaults: the system's roots, no client certificate, TLS 1.2 and
/// 1.3, verification on. 0, or `ALOOP_E_NULL`. Thread-safe.
#[no_mangle]
pub extern "C" fn aloop_tls_client_options_init(opts: *mut aloop_tls_client_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_tls_client_options_t {
                ca_file: std::ptr::null(),
                ca_pem: std::ptr::null(),
                ca_pem_len: 0,
                cert_chain_file: std::ptr::null(),
                cert_chain_pem: std::ptr::null(),
                cert_chain_pem_len: 0,
                key_file: std::ptr::null(),
                key_pem: std::ptr::null(),
                key_pem_len: 0,
                min_version: ALOOP_TLS_1_2,
                insecure_skip_verify: 0,
            })
        };
        0
    })
}

/// Makes a client configuration for `aloop_http_client_options_t.tls`. Reads the files (and,
/// for the system's roots, the system's CA store the first time in the process) during the
/// call. On success `*out` owns the configuration; on failure `*out` is not written and
/// `aloop_last_error_message` says what was wrong. Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID`,
/// `ALOOP_E_TLS_CONFIG`. Thread-safe.
#[no_mangle]
pub extern "C" fn aloop_tls_client_config_new(
    opts: *const aloop_tls_client_options_t,
    out: *mut *mut aloop_tls_client_config_t,
) -> c_int {
    guard(|| {
        not_null!(opts, out);
        // SAFETY: non-NULL, read during the call.
        let o = unsafe { &*opts };
        let make = || -> Result<TlsClientConfig, TlsError> {
            // SAFETY: the pointers of the options, per the struct's contract.
            let (ca, chain, key) = unsafe {
                (
                    pem_input(o.ca_file, o.ca_pem, o.ca_pem_len, "CA")?,
                    pem_input(
                        o.cert_chain_file,
                        o.cert_chain_pem,
                        o.cert_chain_pem_len,
                        "client certificate",
                    )?,
                    pem_input(o.key_file, o.key_pem, o.key_pem_len, "client key")?,
                )
            };
            let client_cert = match (chain, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(TlsError::new(
                        Error::INVALID,
                        "a client certificate needs its key, and a key its certificate",
                    ))
                }
            };
            TlsClientConfig::new(&TlsClientOptions {
                ca_pem: ca,
                client_cert,
                alpn: Vec::new(),
                min_version: version(o.min_version)?,
                dangerous_skip_verification: o.insecure_skip_verify != 0,
            })
        };
        publish(
            make().map(|config| aloop_tls_client_config_t { config }),
            out,
        )
    })
}

/// Frees a client configuration; clients that were given it keep using it. NULL is ignored
/// (0); freed already: `ALOOP_E_STALE`. Thread-safe, as `aloop_tls_server_config_free`.
#[no_mangle]
pub extern "C" fn aloop_tls_client_config_free(cfg: *mut aloop_tls_client_config_t) -> c_int {
    guard(|| free_config(cfg))
}

/// Serves TLS with `cfg` on the connections `server` accepts from now on (its listeners and
/// `aloop_http_server_serve_fd`); connections already open keep the configuration they began
/// with, so a renewed certificate takes effect without a restart. The server keeps its own
/// reference: `cfg` may be freed afterwards. On the server's loop thread. Errors:
/// `ALOOP_E_NULL`, `ALOOP_E_STALE` (a freed server or configuration), `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_server_set_tls(
    server: *mut aloop_http_server_t,
    cfg: *const aloop_tls_server_config_t,
) -> c_int {
    guard(|| {
        not_null!(server, cfg);
        let config = match server_config(cfg) {
            Ok(c) => c,
            Err(e) => return e.code(),
        };
        match handle::with(server, |s: &aloop_http_server_t| s.server.set_tls(config)) {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_constants_match_the_core_codes() {
        for (c, e) in [
            (ALOOP_E_TLS_HANDSHAKE, Error::TLS_HANDSHAKE),
            (ALOOP_E_TLS_UNTRUSTED, Error::TLS_UNTRUSTED),
            (ALOOP_E_TLS_SELF_SIGNED, Error::TLS_SELF_SIGNED),
            (ALOOP_E_TLS_NAME_MISMATCH, Error::TLS_NAME_MISMATCH),
            (ALOOP_E_TLS_EXPIRED, Error::TLS_EXPIRED),
            (ALOOP_E_TLS_PROTOCOL, Error::TLS_PROTOCOL),
            (ALOOP_E_TLS_PLAINTEXT, Error::TLS_PLAINTEXT),
            (ALOOP_E_TLS_CONFIG, Error::TLS_CONFIG),
        ] {
            assert_eq!(c, e.code(), "{e:?}");
        }
    }
}
