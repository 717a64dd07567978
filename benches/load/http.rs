//! A minimal keep-alive HTTP/1.1 client: the load generator's connection, and the helpers
//! every phase uses to build requests and read JSON.

use std::net::{SocketAddr, ToSocketAddrs};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Res, TEXT};

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn io_err(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

pub async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(16 * 1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    Ok(())
}

/// One client connection. Reconnects transparently when the server closes it (HTTP/1.0
/// servers such as the Python reference close after every response; the reconnect is then
/// part of the measured latency, as it is for their real clients).
pub struct HttpConn {
    pub addr: SocketAddr,
    pub stream: Option<TcpStream>,
    pub buf: Vec<u8>,
    pub body: Vec<u8>,
    pub connects: u64,
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
            body: Vec::with_capacity(1024),
            connects: 0,
        }
    }

    pub async fn connect(&mut self) -> std::io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.connects += 1;
            self.stream = Some(s);
        }
        Ok(())
    }

    /// Sends one request (complete bytes) and reads the response; returns the status. The
    /// body is left in `self.body`.
    pub async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        self.connect().await?;
        let Some(mut stream) = self.stream.take() else {
            return Err(io_err("no connection"));
        };
        stream.write_all(req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            read_more(&mut stream, &mut self.buf).await?;
        };
        let head =
            std::str::from_utf8(&self.buf[..head_end]).map_err(|_| io_err("non-UTF-8 head"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut keep = !status_line.starts_with("HTTP/1.0");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err("bad status line"))?;
        let (mut length, mut chunked) = (None, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep = true;
                }
            }
        }
        self.body.clear();
        if let Some(len) = length {
            while self.buf.len() < head_end + len {
                read_more(&mut stream, &mut self.buf).await?;
            }
            self.body
                .extend_from_slice(&self.buf[head_end..head_end + len]);
        } else if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    read_more(&mut stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).unwrap_or("");
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| io_err("bad chunk size"))?;
                let data = line_end + 2;
                while self.buf.len() < data + size + 2 {
                    read_more(&mut stream, &mut self.buf).await?;
                }
                if size == 0 {
                    break;
                }
                self.body.extend_from_slice(&self.buf[data..data + size]);
                pos = data + size + 2;
            }
        } else {
            // Close-delimited body.
            while read_more(&mut stream, &mut self.buf).await.is_ok() {}
            self.body.extend_from_slice(&self.buf[head_end..]);
            keep = false;
        }
        if keep {
            self.stream = Some(stream);
        }
        Ok(status)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `http://host:port[/...]` → socket address and `host:port`.
pub fn addr_of(url: &str) -> Res<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest).to_owned();
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok((addr, hostport))
}

pub fn post_req(host: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn get_req(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// One GET returning JSON, on a fresh connection.
pub async fn get_json(url: &str, path: &str) -> Res<Value> {
    let (addr, host) = addr_of(url)?;
    let mut c = HttpConn::new(addr);
    let status = c
        .send(&get_req(&host, path))
        .await
        .map_err(|e| format!("GET {url}{path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {url}{path}: HTTP {status}: {}", c.body_text()));
    }
    serde_json::from_slice(&c.body).map_err(|e| format!("GET {url}{path}: {e}"))
}

/// The send body used everywhere (ours, the baseline and the reference accept it).
pub fn send_body(extra: Option<(&str, &str)>) -> String {
    let mut body = json!({
        "role": "user",
        "parts": [{"type": "text", "content": TEXT}],
        "context_id": "bench",
    });
    if let Some((k, v)) = extra {
        body[k] = json!(v);
    }
    body.to_string()
}
