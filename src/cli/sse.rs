//! Reads a Server-Sent Events stream (`GET /stream`) chunk by chunk, as the bytes come, into
//! events; what `watch` prints and where it resumes (`id:`) after a reconnect.

/// One event: its `id:` (the node's event seq), `event:` name and `data:` text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id:` field, when there was one.
    pub id: Option<String>,
    /// The `event:` field (`acp.task.status`, …).
    pub event: Option<String>,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// The incremental parser: bytes in, complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

/// A line longer than this (1 MiB frames are the node's limit, plus room) is a broken stream.
const MAX_PENDING: usize = 8 * 1024 * 1024;

impl SseParser {
    /// Feeds a chunk; returns the events it completed. `Err` when one line grows past any
    /// frame the node sends.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            self.line(&line, &mut out);
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_PENDING {
            return Err("an event stream line is too long".into());
        }
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.current));
            } else {
                self.current = SseEvent::default();
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return; // comment (keepalive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "id" => self.current.id = Some(value.to_owned()),
            "event" => self.current.event = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = ": keepalive\n\nid: 14\ndata: {\"type\":\"artifact\"}\nevent: acp.task.artifact\n\nid: 15\r\ndata: {\"a\":1}\r\n\r\n";

    #[test]
    fn events_and_comments() {
        let mut p = SseParser::default();
        let evs = p.feed(SAMPLE.as_bytes()).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].id.as_deref(), Some("14"));
        assert_eq!(evs[0].event.as_deref(), Some("acp.task.artifact"));
        assert_eq!(evs[0].data, "{\"type\":\"artifact\"}");
        assert_eq!(evs[1].id.as_deref(), Some("15"));
        assert_eq!(evs[1].event, None);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        let evs = p.feed(b"data: a\ndata: b\n\n").unwrap();
        assert_eq!(evs[0].data, "a\nb");
    }

    proptest! {
        #[test]
        fn prop_any_split_gives_the_same_events(cut in 0usize..200) {
            let bytes = SAMPLE.as_bytes();
            let cut = cut.min(bytes.len());
            let mut whole = SseParser::default();
            let all = whole.feed(bytes).unwrap();
            let mut split = SseParser::default();
            let mut got = split.feed(&bytes[..cut]).unwrap();
            got.extend(split.feed(&bytes[cut..]).unwrap());
            prop_assert_eq!(got, all);
        }

        #[test]
        fn prop_garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut p = SseParser::default();
            for c in chunks {
                let _ = p.feed(&c);
            }
        }
    }
}
