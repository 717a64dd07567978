//! `acp-relay relay`: a relay server for nodes behind NAT (iroh's relay, in this binary).
//! Nodes started with `--relay URL` keep a connection to it; through it they find each
//! other by key, learn their public addresses (QUIC address discovery, on the QUIC port,
//! which needs TLS), punch holes, and fall back to relayed traffic when punching fails.
//! A relay stores nothing and sees only end-to-end encrypted QUIC packets and the public
//! keys of the nodes using it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use iroh_relay::server::{self as relay, CertConfig, QuicConfig, Server, ServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Flags of `acp-relay relay`.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Where the relay serves HTTPS (what nodes' `--relay https://HOST:PORT` names). Needs a
    /// certificate: --tls-cert/--tls-key, --tls-self-signed or --acme-domain.
    #[arg(long, env = "ACP_RELAY_HTTPS_BIND", default_value = "0.0.0.0:443")]
    pub https_bind: SocketAddr,

    /// Where the relay serves QUIC address discovery (UDP; over TLS only): how nodes behind
    /// NAT learn their public address, which hole punching needs. Nodes assume port 7842
    /// unless their --relay URL says `?quic=PORT`.
    #[arg(long, env = "ACP_RELAY_QUIC_BIND", default_value = "0.0.0.0:7842")]
    pub quic_bind: SocketAddr,

    /// Where the relay serves plain HTTP: the relay itself when no certificate is given
    /// (then nodes use `--relay http://HOST:PORT`, and cannot hole punch), else only a probe.
    #[arg(long, env = "ACP_RELAY_HTTP_BIND", default_value = "0.0.0.0:80")]
    pub http_bind: SocketAddr,

    /// Certificate chain (PEM) for HTTPS and QUIC.
    #[arg(long, env = "ACP_RELAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "ACP_RELAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// For a lab or a private network: generate a certificate for this host name or IP at
    /// start and write it to --tls-cert-out, for nodes to trust with --relay-ca.
    #[arg(long, requires = "tls_cert_out", conflicts_with_all = ["tls_cert", "acme_domain"])]
    pub tls_self_signed: Option<String>,

    /// Where --tls-self-signed writes its certificate (PEM).
    #[arg(long, requires = "tls_self_signed")]
    pub tls_cert_out: Option<PathBuf>,

    /// Get a certificate for this domain from Let's Encrypt (ACME, TLS-ALPN on the HTTPS
    /// port, which must then be reachable as 443 from the internet).
    #[arg(long, requires = "acme_contact", conflicts_with = "tls_cert")]
    pub acme_domain: Option<String>,

    /// Contact e-mail for the ACME account.
    #[arg(long, requires = "acme_domain")]
    pub acme_contact: Option<String>,

    /// Where ACME keeps its account and certificates (default: not cached).
    #[arg(long, requires = "acme_domain")]
    pub acme_cache: Option<PathBuf>,
}

/// A running relay and where it listens.
pub struct RunningRelay {
    server: Server,
}

impl RunningRelay {
    /// Where plain HTTP is served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// Where HTTPS is served (with a certificate).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.server.https_addr()
    }

    /// Where QUIC address discovery is served (with a certificate).
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.server.quic_addr()
    }

    /// Stops the relay.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}

/// Starts a relay as the flags say.
pub async fn start(args: &RelayArgs) -> Result<RunningRelay, String> {
    crate::wire::quic::install_tls_provider();
    let cert = certificate(args)?;
    let mut relay_config = relay::RelayConfig::new(args.http_bind);
    let mut quic = None;
    if let Some(cert) = cert {
        if let CertConfig::Manual { server_config } = &cert {
            let mut q = QuicConfig::new(args.quic_bind);
            q.server_config = Some(server_config.clone());
            quic = Some(q);
        } else {
            quic = Some(QuicConfig::new(args.quic_bind));
        }
        relay_config.tls = Some(relay::TlsConfig::new(args.https_bind, cert));
    }
    let mut config = ServerConfig::default();
    config.relay = Some(relay_config);
    config.quic = quic;
    let server = Server::spawn(config)
        .await
        .map_err(|e| format!("cannot start the relay: {e}"))?;
    Ok(RunningRelay { server })
}

/// The TLS server settings every certificate source starts from.
fn tls_builder() -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
}

/// The certificate the flags ask for; none for a plain-HTTP relay.
fn certificate(args: &RelayArgs) -> Result<Option<CertConfig>, String> {
    let (certs, key) = if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
        (certs, key)
    } else if let (Some(name), Some(out)) = (&args.tls_self_signed, &args.tls_cert_out) {
        let made = rcgen::generate_simple_self_signed(vec![name.clone()])
            .map_err(|e| format!("--tls-self-signed {name}: {e}"))?;
        std::fs::write(out, made.cert.pem())
            .map_err(|e| format!("--tls-cert-out {}: {e}", out.display()))?;
        tracing::info!(cert = %out.display(), %name, "self-signed relay certificate written; give it to nodes with --relay-ca");
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| format!("self-signed key: {e}"))?;
        (vec![made.cert.der().clone()], key)
    } else if let (Some(domain), Some(contact)) = (&args.acme_domain, &args.acme_contact) {
        let mut acme = relay::AcmeConfig::letsencrypt(true)
            .domains(vec![domain.clone()])
            .contact(vec![format!("mailto:{contact}")]);
        if let Some(dir) = &args.acme_cache {
            acme = acme.cache_path(dir.clone());
        }
        return Ok(Some(CertConfig::LetsEncrypt {
            acme_config: acme,
            server_config_builder: tls_builder(),
        }));
    } else {
        return Ok(None);
    };
    let server_config = tls_builder()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(Some(CertConfig::Manual { server_config }))
}
