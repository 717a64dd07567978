//! The WebSocket framing every peer connection uses, over TCP (the reference's transport)
//! or over an iroh QUIC stream: the session's [`FrameReader`] and [`FrameWriter`] on the two
//! halves of a tungstenite stream.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::node::Node;
use crate::node::session::{FrameReader, FrameWriter, Incoming};

/// Initial read buffer per connection (grows for bigger frames).
const READ_BUFFER: usize = 8 * 1024;
/// Bytes buffered before tungstenite writes to the socket even without a flush.
const WRITE_BUFFER: usize = 64 * 1024;

/// The WebSocket settings of every peer connection, on any transport.
pub fn config(node: &Node) -> WebSocketConfig {
    // Frames above --max-msg-size are refused by the node with a log line; the transport cap
    // is looser so that such a frame does not tear the connection down.
    let cap = node
        .config()
        .max_msg_size
        .saturating_mul(4)
        .max(16 * 1024 * 1024);
    // tungstenite's default buffers are 128 KiB each, and the read buffer is zero-filled up
    // to its capacity before every read, so every connection kept them resident: 154 kB of
    // RSS per idle peer. 8 KiB holds a typical frame in one read; larger frames grow the
    // buffer as needed. Writes are batched by the session loop and flushed explicitly, so the
    // write buffer only needs to hold one batch before it goes out in one syscall.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap))
}

/// The reading half of a peer WebSocket.
pub struct WsReader<S>(SplitStream<WebSocketStream<S>>);

/// The writing half of a peer WebSocket.
pub struct WsWriter<S>(SplitSink<WebSocketStream<S>, Message>);

/// Splits an established peer WebSocket for its session.
pub fn split<S>(ws: WebSocketStream<S>) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    (WsReader(stream), WsWriter(sink))
}

impl<S> FrameReader for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Text = Utf8Bytes;

    async fn next_frame(&mut self) -> Incoming<Utf8Bytes> {
        match self.0.next().await {
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Binary(b))) => Incoming::Binary(b.len()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Control,
            Some(Ok(Message::Close(_))) | None => Incoming::Closed,
            Some(Err(e)) => Incoming::Failed(e.to_string()),
        }
    }
}

impl<S> FrameWriter for WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn feed(&mut self, text: String) -> Result<(), String> {
        self.0
            .feed(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    async fn flush(&mut self) -> Result<(), String> {
        self.0.flush().await.map_err(|e| e.to_string())
    }

    async fn ping(&mut self) -> Result<(), String> {
        self.0
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| e.to_string())
    }

    async fn close(&mut self) {
        let _ = self.0.send(Message::Close(None)).await;
    }
}
