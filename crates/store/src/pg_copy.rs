//! PostgreSQL's binary `COPY … FROM STDIN` format, built by hand for the few column types
//! ingest writes (`int8`, `bool`, `text`): a batch's rows stream into a table for a fraction
//! of what a statement of unnested column arrays costs to parse, and binary values need no
//! escaping.

/// Bytes of `COPY` data built before they are sent, so PostgreSQL parses a batch while the
/// rest of it is encoded.
pub(crate) const SEND_BYTES: usize = 1 << 20;

/// Rows in the binary `COPY` format: a header, then per row its field count and each field as
/// a big-endian length (-1: NULL) and the value in the type's binary form (`int8`: 8 bytes
/// big-endian, `bool`: one byte, `text`: its UTF-8 bytes as they are), then a trailer.
pub(crate) struct BinaryRows {
    pub(crate) buf: Vec<u8>,
}

impl BinaryRows {
    /// The header; rows follow.
    pub(crate) fn new() -> BinaryRows {
        let mut buf = Vec::with_capacity(SEND_BYTES + 4_096);
        // Signature, flags (no OIDs), header extension length.
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        BinaryRows { buf }
    }

    /// Whether the data built so far is worth sending ([`SEND_BYTES`]).
    pub(crate) fn full(&self) -> bool {
        self.buf.len() >= SEND_BYTES
    }

    /// The data built so far, to send; the buffer starts again empty.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Starts a row of `fields` fields.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    /// The end of the rows (a field count of -1).
    pub(crate) fn end(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(crate) fn int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub(crate) fn bool(&mut self, v: Option<bool>) {
        match v {
            Some(v) => {
                self.buf.extend_from_slice(&1i32.to_be_bytes());
                self.buf.push(u8::from(v));
            }
            None => self.null(),
        }
    }

    /// A text field. A value past what a field's length can say (2 GiB) is cut there, and
    /// PostgreSQL refuses it whole (1 GB is its limit for a value).
    pub(crate) fn text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf
                    .extend_from_slice(&v.as_bytes()[..v.len().min(i32::MAX as usize)]);
            }
            None => self.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_as_postgresql_reads_them() {
        let mut rows = BinaryRows::new();
        rows.row(4);
        rows.int8(Some(-2));
        rows.bool(Some(true));
        rows.text(Some("é"));
        rows.text(None);
        rows.end();
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 4]);
        want.extend_from_slice(&[0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254]);
        want.extend_from_slice(&[0, 0, 0, 1, 1]);
        want.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        want.extend_from_slice(&[255, 255, 255, 255]);
        want.extend_from_slice(&[255, 255]);
        assert_eq!(rows.take(), want);
    }
}
