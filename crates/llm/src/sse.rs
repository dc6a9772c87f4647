//! Server-sent events as chat-completions streams use them: `data:` lines, an event ending at
//! a blank line, `data: [DONE]` closing the stream. Pure and bounded: an event longer than
//! [`MAX_EVENT_BYTES`] is an error, not memory.

/// Longest event accepted (a chunk of a reply is a few hundred bytes).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Splits bytes, as they arrive in any pieces, into the data of each event.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: String,
    has_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event of the stream is longer than {MAX_EVENT_BYTES} bytes")]
    TooLong,
    #[error("the stream is not UTF-8")]
    NotUtf8,
}

impl SseDecoder {
    /// Feeds `bytes`; every event they complete is pushed to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), SseError> {
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, out)?;
            } else {
                if self.line.len() + self.data.len() >= MAX_EVENT_BYTES {
                    return Err(SseError::TooLong);
                }
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<String>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        // Comments (`: keep-alive`) and other fields (`event:`, `id:`, `retry:`) carry no data.
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
            if self.data.len() >= MAX_EVENT_BYTES {
                return Err(SseError::TooLong);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whatever_the_pieces() {
        let stream = b": hello\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:{\"b\":\ndata: 2}\n\ndata: [DONE]\n\n";
        let want = vec![
            "{\"a\":1}".to_string(),
            "{\"b\":\n2}".to_string(),
            "[DONE]".to_string(),
        ];
        for size in [1, 2, 3, 7, stream.len()] {
            let mut d = SseDecoder::default();
            let mut out = Vec::new();
            for piece in stream.chunks(size) {
                d.feed(piece, &mut out).unwrap();
            }
            assert_eq!(out, want, "pieces of {size}");
        }
    }

    #[test]
    fn an_endless_line_is_an_error_not_memory() {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        let big = vec![b'x'; 64 * 1024];
        let mut result = Ok(());
        for _ in 0..(MAX_EVENT_BYTES / big.len() + 2) {
            result = d.feed(&big, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::TooLong));
        assert!(out.is_empty());
    }
}
