// asyncloop/tls.hpp: part of asyncloop.hpp (include that). TLS configurations for servers and clients.
#ifndef ASYNCLOOP_TLS_HPP
#define ASYNCLOOP_TLS_HPP

#include "http_request.hpp"

namespace aloop {

/// A server's TLS configuration (certificate chain and key, optional client-certificate
/// verification), owned and move-only. Servers keep their own reference: it may be destroyed
/// once handed to them. Throws `Error` with the reason (`ALOOP_E_TLS_CONFIG`: unreadable or
/// invalid PEM, a key that does not match its certificate).
class TlsServerConfig {
  public:
    struct Options {
        aloop_tls_server_options_t c;
        Options() { aloop_tls_server_options_init(&c); }
    };

    explicit TlsServerConfig(const Options &o) {
        int rc = aloop_tls_server_config_new(&o.c, &cfg_);
        if (rc != 0)
            throw Error(rc, std::string("TLS server configuration: ") + aloop_last_error_message());
    }
    /// From PEM files; with `client_ca`, clients must present a certificate signed by it.
    static TlsServerConfig from_files(const std::string &cert_chain, const std::string &key,
                                      const std::string &client_ca = "") {
        Options o;
        o.c.cert_chain_file = cert_chain.c_str();
        o.c.key_file = key.c_str();
        if (!client_ca.empty())
            o.c.client_ca_file = client_ca.c_str();
        return TlsServerConfig(o);
    }
    TlsServerConfig(TlsServerConfig &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    TlsServerConfig &operator=(TlsServerConfig &&o) noexcept {
        std::swap(cfg_, o.cfg_);
        return *this;
    }
    TlsServerConfig(const TlsServerConfig &) = delete;
    TlsServerConfig &operator=(const TlsServerConfig &) = delete;
    ~TlsServerConfig() { aloop_tls_server_config_free(cfg_); }
    const aloop_tls_server_config_t *get() const noexcept { return cfg_; }

  private:
    aloop_tls_server_config_t *cfg_ = nullptr;
};

/// A client's TLS configuration (trusted roots, client certificate), owned and move-only.
class TlsClientConfig {
  public:
    struct Options {
        aloop_tls_client_options_t c;
        Options() { aloop_tls_client_options_init(&c); }
    };

    explicit TlsClientConfig(const Options &o) {
        int rc = aloop_tls_client_config_new(&o.c, &cfg_);
        if (rc != 0)
            throw Error(rc, std::string("TLS client configuration: ") + aloop_last_error_message());
    }
    /// Trusting the CA file `ca` ("" for the system's roots). `insecure_skip_verify` turns
    /// verification off: anyone on the path can read and change the traffic.
    static TlsClientConfig trusting(const std::string &ca, bool insecure_skip_verify = false) {
        Options o;
        if (!ca.empty())
            o.c.ca_file = ca.c_str();
        o.c.insecure_skip_verify = insecure_skip_verify;
        return TlsClientConfig(o);
    }
    TlsClientConfig(TlsClientConfig &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    TlsClientConfig &operator=(TlsClientConfig &&o) noexcept {
        std::swap(cfg_, o.cfg_);
        return *this;
    }
    TlsClientConfig(const TlsClientConfig &) = delete;
    TlsClientConfig &operator=(const TlsClientConfig &) = delete;
    ~TlsClientConfig() { aloop_tls_client_config_free(cfg_); }
    const aloop_tls_client_config_t *get() const noexcept { return cfg_; }

  private:
    aloop_tls_client_config_t *cfg_ = nullptr;
};

} // namespace aloop

#endif
