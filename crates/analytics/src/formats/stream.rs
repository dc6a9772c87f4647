//! A JSON document read as a stream of elements: serde visits the document and hands each
//! element of an array to a callback as raw text borrowed from the body (validated as JSON,
//! not parsed into anything), so memory follows what the callback keeps, never the size of
//! the document. A callback that stops the read (too many records) ends it at once, with its
//! own error.

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::FormatError;

/// Largest element parsed into a JSON tree (a vendor export's spend log, bucket field or
/// result; an OTLP span): a tree can take some 30 times its text, so larger ones are refused
/// as records rather than parsed.
pub const MAX_ELEMENT_BYTES: usize = 1024 * 1024;

/// Where a callback leaves the error that stopped the read (serde's own error type cannot
/// carry it).
pub type Stop = Option<FormatError>;

/// Reads `text` with `seed`, then checks nothing but whitespace follows.
pub fn read_document<'a, S: DeserializeSeed<'a>>(
    text: &'a str,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The outcome of a [`read_document`]: an error a callback left in `stop` as it is, else a
/// syntax or shape error as a [`FormatError::Document`] prefixed with `what`.
pub fn finish<T>(
    read: Result<T, serde_json::Error>,
    stop: Stop,
    what: &str,
) -> Result<T, FormatError> {
    match (read, stop) {
        (_, Some(stopped)) => Err(stopped),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(FormatError::Document(format!("{what}: {e}"))),
    }
}

/// The error a visitor returns after a callback stopped the read (never shown: the callback's
/// own error in [`Stop`] wins).
pub fn stopped<E: serde::de::Error>() -> E {
    E::custom("stopped")
}

/// Hands every element of an array to `each` as raw JSON text.
pub struct EachElement<'f, F> {
    pub each: &'f mut F,
    pub stop: &'f mut Stop,
}

impl<'de, F> DeserializeSeed<'de> for EachElement<'_, F>
where
    F: FnMut(&'de str) -> Result<(), FormatError>,
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for EachElement<'_, F>
where
    F: FnMut(&'de str) -> Result<(), FormatError>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if let Err(e) = (self.each)(raw.get()) {
                *self.stop = Some(e);
                return Err(stopped());
            }
        }
        Ok(())
    }
}

/// Calls `each` with every element of the top-level array `text`.
pub fn array_elements<'a>(
    text: &'a str,
    mut each: impl FnMut(&'a str) -> Result<(), FormatError>,
    what: &str,
) -> Result<(), FormatError> {
    let mut stop = None;
    let read = read_document(
        text,
        EachElement {
            each: &mut each,
            stop: &mut stop,
        },
    );
    finish(read, stop, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_arrive_raw_and_in_order() {
        let mut seen = Vec::new();
        array_elements(
            r#" [ {"a":1}, [2, 3], "x", 1e309 ] "#,
            |raw| {
                seen.push(raw.to_string());
                Ok(())
            },
            "not an array",
        )
        .unwrap();
        assert_eq!(seen, [r#"{"a":1}"#, "[2, 3]", r#""x""#, "1e309"]);
    }

    #[test]
    fn a_document_that_is_not_one_array_is_refused() {
        for text in ["[1,", "[1] 2", "{}", "{{{{"] {
            let e = array_elements(text, |_| Ok(()), "not an array").unwrap_err();
            assert!(
                matches!(&e, FormatError::Document(m) if m.starts_with("not an array")),
                "{text}: {e:?}"
            );
        }
    }

    #[test]
    fn a_callback_stops_the_read_with_its_own_error() {
        let mut n = 0;
        let e = array_elements(
            "[1,2,3,4]",
            |_| {
                n += 1;
                if n == 2 {
                    Err(FormatError::TooManyRecords(1))
                } else {
                    Ok(())
                }
            },
            "not an array",
        )
        .unwrap_err();
        assert_eq!(e, FormatError::TooManyRecords(1));
        assert_eq!(n, 2, "nothing is read after the stop");
    }
}
