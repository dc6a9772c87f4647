//! WebSocket close codes of PROTOCOL.md §6, named so no number is written twice.

/// Graceful server shutdown: reconnect (elsewhere or later) with `last_seq`.
pub const SERVICE_RESTART: u16 = 1012;
/// The server failed internally.
pub const INTERNAL_ERROR: u16 = 1011;
/// A frame larger than [`crate::client::MAX_FRAME_BYTES`].
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The client broke the WebSocket protocol itself (a bad frame header, an unmasked frame, a
/// control frame over 125 bytes).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A binary frame: the protocol is text-only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Too many bad frames in a short time.
pub const POLICY_VIOLATION: u16 = 1008;
/// The client's bounded send queue filled up: it reads too slowly.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The JWT expired while connected.
pub const TOKEN_EXPIRED: u16 = 4001;

/// The reason texts sent with the closes a server makes on its own account, each written once
/// (the code says what to do; the text is for people reading logs).
pub mod reason {
    /// With [`super::TRY_AGAIN_LATER`]: the client's send queue filled up.
    pub const TOO_SLOW: &str = "too slow: resume with last_seq";
    /// With [`super::SERVICE_RESTART`]: the node is shutting down.
    pub const RESTARTING: &str = "server restarting";
    /// With [`super::TOKEN_EXPIRED`]: the credential expired or was signed out.
    pub const TOKEN_EXPIRED: &str = "token_expired";
}
