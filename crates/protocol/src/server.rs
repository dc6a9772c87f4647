//! Server → client frames that are not stream events (PROTOCOL.md §2, §5): `connection_ready`,
//! `message_ack`, `pong` and `error`. They carry no `seq` and are never replayed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error codes of `error` frames (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    NotFound,
    RateLimited,
    Busy,
    Internal,
}

/// A transient frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    ConnectionReady {
        connection_id: String,
        user_id: String,
        org_id: String,
        server_time: String,
        heartbeat_ms: u64,
        head_seq: u64,
        replayed: u64,
        resync_required: bool,
    },
    MessageAck {
        client_msg_id: String,
        message_id: String,
        thread_id: String,
        run_id: String,
        duplicate: bool,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame {
    /// Serializes the frame; the types here always serialize.
    pub fn to_json(&self) -> String {
        // Serialization of these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_string()
        })
    }
}
