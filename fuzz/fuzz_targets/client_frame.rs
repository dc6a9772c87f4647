//! Any text frame a client can send: the parser answers with a frame or a specified error.
#![no_main]

use apogee_protocol::{ErrorCode, parse_client_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The WebSocket layer only hands over valid UTF-8 text frames.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = parse_client_frame(text) {
            assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownType));
        }
    }
});
