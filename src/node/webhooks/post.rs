//! One webhook request: an HTTP/1.1 POST on hyper's client connection (already in the binary
//! for the CLI and iroh), over TLS with rustls and the webpki roots for `https` (both already
//! compiled in for iroh's relay client: no new crate in the tree). A connection is kept
//! between deliveries to the same webhook and opened again when the receiver closed it.
//!
//! Only the registered URL is contacted: no redirect is followed, no proxy variable is read,
//! nothing else is asked (the system resolver aside, for a host name).

use std::sync::{Arc, OnceLock};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::url::{Target, WebhookUrl};

/// Most bytes of a receiver's answer read (and thrown away) so that its connection can carry
/// the next delivery; a longer answer closes the connection instead.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A connection to one webhook, kept between deliveries.
pub type Connection = SendRequest<Full<Bytes>>;

/// Opens connections to webhooks; holds the TLS configuration, built on first use.
#[derive(Default)]
pub struct Connector {
    tls: OnceLock<Arc<rustls::ClientConfig>>,
    /// Extra roots trusted besides the webpki ones (tests: a receiver with its own CA).
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Refuse to connect to any address that is not public (A2A push targets named by a
    /// remote caller): checked on the resolved addresses at each connection, so a name
    /// that later resolves to a private address is refused too.
    public_only: bool,
}

/// What a receiver answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Its HTTP status.
    pub status: u16,
}

impl Connector {
    /// A connector that also trusts `roots` (DER certificates) for `https` receivers.
    pub fn with_roots(roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> Connector {
        Connector {
            tls: OnceLock::new(),
            extra_roots: roots,
            public_only: false,
        }
    }

    /// A connector that connects only to public addresses (see [`super::url::is_public`]).
    pub fn public_only() -> Connector {
        Connector {
            public_only: true,
            ..Connector::default()
        }
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = self.tls.get() {
            return Ok(c.clone());
        }
        let mut roots: rustls::RootCertStore =
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        for cert in &self.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("bad extra root certificate: {e}"))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(self.tls.get_or_init(|| Arc::new(config)).clone())
    }

    /// Opens a connection to `url`'s host (TLS for `https`).
    pub async fn connect(&self, url: &WebhookUrl) -> Result<Connection, String> {
        let port = url.port();
        let target = url.target();
        let tcp = if self.public_only {
            let addrs: Vec<std::net::SocketAddr> = match &target {
                Target::Ip(ip) => vec![(*ip, port).into()],
                Target::Name(name) => tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|e| format!("cannot resolve: {e}"))?
                    .collect(),
            };
            if let Some(bad) = addrs.iter().find(|a| !super::url::is_public(a.ip())) {
                return Err(format!("refused: {} is not a public address", bad.ip()));
            }
            TcpStream::connect(&addrs[..]).await
        } else {
            match &target {
                Target::Ip(ip) => TcpStream::connect((*ip, port)).await,
                Target::Name(name) => TcpStream::connect((name.as_str(), port)).await,
            }
        }
        .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !url.is_https() {
            return handshake(TokioIo::new(tcp)).await;
        }
        let name = match target {
            Target::Ip(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Target::Name(n) => rustls::pki_types::ServerName::try_from(n)
                .map_err(|e| format!("not a TLS server name: {e}"))?,
        };
        let tls = tokio_rustls::TlsConnector::from(self.tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        handshake(TokioIo::new(tls)).await
    }

    /// POSTs `body` with `headers` to `url` on the connection in `slot` (opening one when
    /// there is none or it was closed). A kept connection the receiver closed in the
    /// meantime gets one fresh connection at once. The slot is emptied on any failure.
    pub async fn post(
        &self,
        slot: &mut Option<Connection>,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let reused = match slot.take() {
            Some(c) if !c.is_closed() => Some(c),
            _ => None,
        };
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => self.connect(url).await?,
        };
        let result = match send(&mut conn, url, headers, body.clone()).await {
            Err(_) if was_reused => {
                conn = self.connect(url).await?;
                send(&mut conn, url, headers, body).await
            }
            other => other,
        };
        if let Ok((_, keep)) = &result
            && *keep
            && !conn.is_closed()
        {
            *slot = Some(conn);
        }
        result.map(|(answer, _)| answer)
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Connection, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    // Ends when the sender is dropped or the receiver closes the connection.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on `conn`; returns the answer and whether the connection may be kept.
async fn send(
    conn: &mut Connection,
    url: &WebhookUrl,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<(Answer, bool), String> {
    conn.ready()
        .await
        .map_err(|e| format!("connection lost: {e}"))?;
    let mut req = Request::post(url.path_and_query())
        .header(header::HOST, url.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("acp-relay/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let answer = Answer {
        status: resp.status().as_u16(),
    };
    let keep = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .is_ok();
    Ok((answer, keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection HTTPS receiver on loopback with a self-signed certificate for
    /// `localhost`: answers each request 204 and sends back the bodies it read.
    async fn https_receiver() -> (
        u16,
        rustls::pki_types::CertificateDer<'static>,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = made.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A client that refuses the certificate ends the handshake.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            loop {
                // One request: the head, then as many body bytes as it announced.
                let mut chunk = [0u8; 4096];
                let n = tls.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() < end + 4 + len {
                    continue;
                }
                let _ = tx.send(text[..end + 4 + len].to_owned());
                buf.drain(..end + 4 + len);
                tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .unwrap();
            }
        });
        (port, cert, rx)
    }

    /// A public-only connector refuses a loopback or private target before connecting,
    /// given as an address or as a name that resolves to one (`localhost`).
    #[tokio::test]
    async fn a_public_only_connector_refuses_non_public_targets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = Connector::public_only();
        for raw in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            "http://10.0.0.1:9/".to_owned(),
            "http://[::1]:9/".to_owned(),
        ] {
            let url = WebhookUrl::parse(&raw).unwrap();
            let err = c.connect(&url).await.expect_err(&raw);
            assert!(
                err.contains("not a public address") || err.contains("cannot resolve"),
                "{raw}: {err}"
            );
        }
        // The ordinary connector reaches the same loopback receiver.
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        let _ = Connector::default().connect(&url).await;
        assert!(accept.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn https_receivers_get_posts_on_one_kept_connection_and_unknown_cas_are_refused() {
        let (port, _, _got) = https_receiver().await;
        let url = WebhookUrl::parse(&format!("https://localhost:{port}/in?k=v")).unwrap();
        // Without its CA the receiver's certificate is refused.
        let mut slot = None;
        let err = Connector::default()
            .post(&mut slot, &url, &[], Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(err.contains("TLS") || err.contains("certificate"), "{err}");

        let (port, cert2, mut got2) = https_receiver().await;
        let url = WebhookUrl::parse(&format!("https://localhost:{port}/in?k=v")).unwrap();
        let connector = Connector::with_roots(vec![cert2]);
        let mut slot = None;
        for body in [&b"{\"n\":1}"[..], b"{\"n\":2}"] {
            let answer = connector
                .post(
                    &mut slot,
                    &url,
                    &[("x-acp-event", "message".into())],
                    Bytes::copy_from_slice(body),
                )
                .await
                .unwrap();
            assert_eq!(answer.status, 204);
            assert!(slot.is_some(), "the connection is kept");
        }
        // Both requests came over the receiver's one connection.
        for n in 1..=2 {
            let req = got2.recv().await.unwrap();
            assert!(req.starts_with("POST /in?k=v HTTP/1.1\r\n"), "{req}");
            assert!(
                req.to_ascii_lowercase()
                    .contains(&format!("host: localhost:{port}")),
                "{req}"
            );
            assert!(req.contains("x-acp-event: message"), "{req}");
            assert!(req.ends_with(&format!("{{\"n\":{n}}}")), "{req}");
        }
    }
}
