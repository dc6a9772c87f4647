//! The Apogee wire protocol, version 1 (see `shared/PROTOCOL.md`): every frame a client or the
//! server may send, with serde, and the validation of client frames. Nothing here does I/O.

pub mod client;
pub mod close;
pub mod depth;
pub mod events;
pub mod server;
pub mod time;

pub use client::{ClientFrame, FrameError, parse_client_frame};
pub use events::{
    AgentStatus, AlertKind, AnomalyAlert, BudgetAlert, BudgetRef, Contributor, EventBody,
    MessageInfo, Role, SUPERVISOR_AGENT, StreamEvent, ThreadInfo, ToolStatus,
};
pub use server::{ErrorCode, ServerFrame};

/// The WebSocket subprotocol a client may offer; echoed when offered.
pub const SUBPROTOCOL: &str = "apogee.v1";
