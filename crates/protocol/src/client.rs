//! Client → server frames (PROTOCOL.md §5) and their validation. Parsing never panics: every
//! input yields either a frame or a [`FrameError`] that maps to an `error` frame.

use serde::Deserialize;
use serde_json::Value;

use crate::depth::{MAX_JSON_DEPTH, json_depth_exceeds};
use crate::server::ErrorCode;

/// Largest text frame a client may send (§6); larger frames close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest `content` of a `user_message`, in Unicode scalar values.
pub const MAX_CONTENT_CHARS: usize = 8000;
/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// Longest id (`thread_id`, `run_id`) a client may send; real ids are much shorter.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `ping` nonce (as serialized JSON) echoed back.
pub const MAX_NONCE_BYTES: usize = 256;

/// A validated frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    UserMessage {
        client_msg_id: String,
        content: String,
        thread_id: Option<String>,
    },
    CancelRun {
        run_id: String,
    },
    Ping {
        nonce: Option<Value>,
    },
}

/// Why a client frame was refused; becomes an `error` frame and the connection stays open.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
    /// Echoed when the frame carried a readable `client_msg_id`, so the client can match it.
    pub client_msg_id: Option<String>,
}

impl FrameError {
    fn bad_request(message: impl Into<String>, client_msg_id: Option<String>) -> Self {
        Self {
            code: ErrorCode::BadRequest,
            message: message.into(),
            client_msg_id,
        }
    }
}

#[derive(Deserialize)]
struct RawUserMessage {
    client_msg_id: Option<Value>,
    content: Option<Value>,
    thread_id: Option<Value>,
}

/// Parses and validates one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    // Checked before parsing, so no input can make the parser recurse deeply.
    if json_depth_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(FrameError::bad_request(
            format!("frame is nested deeper than {MAX_JSON_DEPTH} levels"),
            None,
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| FrameError::bad_request(format!("frame is not valid JSON: {e}"), None))?;
    let Value::Object(map) = &value else {
        return Err(FrameError::bad_request("frame must be a JSON object", None));
    };
    let Some(kind) = map.get("type") else {
        return Err(FrameError::bad_request("missing field `type`", None));
    };
    let Some(kind) = kind.as_str() else {
        return Err(FrameError::bad_request(
            "field `type` must be a string",
            None,
        ));
    };
    match kind {
        "user_message" => parse_user_message(value.clone()),
        "cancel_run" => {
            let run_id = required_id(map.get("run_id"), "run_id", MAX_ID_CHARS, None)?;
            Ok(ClientFrame::CancelRun { run_id })
        }
        "ping" => {
            let nonce = map.get("nonce").filter(|v| !v.is_null()).cloned();
            if let Some(n) = &nonce
                && n.to_string().len() > MAX_NONCE_BYTES
            {
                return Err(FrameError::bad_request(
                    format!("`nonce` is longer than {MAX_NONCE_BYTES} bytes"),
                    None,
                ));
            }
            Ok(ClientFrame::Ping { nonce })
        }
        other => Err(FrameError {
            code: ErrorCode::UnknownType,
            message: format!("unknown frame type `{}`", truncate(other, 64)),
            client_msg_id: None,
        }),
    }
}

fn parse_user_message(value: Value) -> Result<ClientFrame, FrameError> {
    let raw: RawUserMessage = serde_json::from_value(value)
        .map_err(|e| FrameError::bad_request(format!("invalid user_message: {e}"), None))?;
    let client_msg_id = required_id(
        raw.client_msg_id.as_ref(),
        "client_msg_id",
        MAX_CLIENT_MSG_ID_CHARS,
        None,
    )?;
    let echo = Some(client_msg_id.clone());
    let content = match raw.content {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => {
            return Err(FrameError::bad_request("missing field `content`", echo));
        }
        Some(_) => return Err(FrameError::bad_request("`content` must be a string", echo)),
    };
    let chars = content.chars().count();
    if chars == 0 || chars > MAX_CONTENT_CHARS {
        return Err(FrameError::bad_request(
            format!("`content` must be 1–{MAX_CONTENT_CHARS} characters (got {chars})"),
            echo,
        ));
    }
    if let Some(c) = content.chars().find(|c| is_forbidden_in_text(*c)) {
        return Err(FrameError::bad_request(
            format!(
                "`content` contains the control character U+{:04X} (only tab and line breaks are allowed)",
                u32::from(c)
            ),
            echo,
        ));
    }
    let thread_id = match raw.thread_id {
        None | Some(Value::Null) => None,
        Some(v) => Some(required_id(
            Some(&v),
            "thread_id",
            MAX_ID_CHARS,
            echo.clone(),
        )?),
    };
    Ok(ClientFrame::UserMessage {
        client_msg_id,
        content,
        thread_id,
    })
}

fn required_id(
    value: Option<&Value>,
    field: &str,
    max_chars: usize,
    echo: Option<String>,
) -> Result<String, FrameError> {
    match value {
        None | Some(Value::Null) => Err(FrameError::bad_request(
            format!("missing field `{field}`"),
            echo,
        )),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > max_chars {
                Err(FrameError::bad_request(
                    format!("`{field}` must be 1–{max_chars} characters"),
                    echo,
                ))
            } else if let Some(c) = s.chars().find(|c| c.is_control()) {
                Err(FrameError::bad_request(
                    format!(
                        "`{field}` contains the control character U+{:04X}",
                        u32::from(c)
                    ),
                    echo,
                ))
            } else {
                Ok(s.clone())
            }
        }
        Some(_) => Err(FrameError::bad_request(
            format!("`{field}` must be a string"),
            echo,
        )),
    }
}

/// A control character other than tab and line breaks: never part of a message, refused by
/// some databases (U+0000), and able to fool whoever displays the text.
pub fn is_forbidden_in_text(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_message() {
        let f = parse_client_frame(
            r#"{"type":"user_message","client_msg_id":"m1","content":"hi","thread_id":null}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::UserMessage {
                client_msg_id: "m1".into(),
                content: "hi".into(),
                thread_id: None
            }
        );
    }

    #[test]
    fn rejects_non_json_and_unknown_type() {
        assert_eq!(
            parse_client_frame("nope").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse_client_frame("[1]").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"dance"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
    }

    #[test]
    fn user_message_field_errors_echo_client_msg_id() {
        let e = parse_client_frame(r#"{"type":"user_message","content":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.client_msg_id), (ErrorCode::BadRequest, None));

        let long = "é".repeat(MAX_CONTENT_CHARS + 1);
        let text = format!(r#"{{"type":"user_message","client_msg_id":"a","content":"{long}"}}"#);
        let e = parse_client_frame(&text).unwrap_err();
        assert_eq!(e.client_msg_id.as_deref(), Some("a"));

        let ok = "é".repeat(MAX_CONTENT_CHARS);
        let text = format!(r#"{{"type":"user_message","client_msg_id":"a","content":"{ok}"}}"#);
        assert!(
            parse_client_frame(&text).is_ok(),
            "limit counts characters, not bytes"
        );

        let e = parse_client_frame(&format!(
            r#"{{"type":"user_message","client_msg_id":"{}","content":"x"}}"#,
            "a".repeat(65)
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn control_characters_are_bad_requests_in_ids_and_content() {
        let frame = |id: &str, content: &str, thread: &str| {
            serde_json::json!({"type":"user_message","client_msg_id":id,"content":content,"thread_id":thread})
                .to_string()
        };
        for text in [
            frame("m\u{0}", "hi", "t"),
            frame("m", "hi\u{0}there", "t"),
            frame("m", "\u{1b}[2J", "t"),
            frame("m", "hi", "t\u{0}"),
            serde_json::json!({"type":"cancel_run","run_id":"r\u{0}"}).to_string(),
        ] {
            let e = parse_client_frame(&text).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{text}");
            assert!(e.message.contains("control character"), "{}", e.message);
        }
        // Tabs and line breaks belong in messages.
        assert!(parse_client_frame(&frame("m", "a\tb\r\nc", "t")).is_ok());
    }

    #[test]
    fn ping_echoes_nonce_and_cancel_needs_run_id() {
        assert_eq!(
            parse_client_frame(r#"{"type":"ping","nonce":7}"#).unwrap(),
            ClientFrame::Ping {
                nonce: Some(Value::from(7))
            }
        );
        assert!(parse_client_frame(r#"{"type":"cancel_run"}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"cancel_run","run_id":5}"#).is_err());
    }
}
