//! Apogee's one interface to a large language model: the OpenAI chat-completions wire format
//! with tool calling and server-sent-event streaming, which OpenAI, Azure OpenAI (v1 API),
//! Anthropic's and Google's OpenAI-compatible endpoints, vLLM, Ollama, llama.cpp's server and
//! a LiteLLM proxy all speak.
//!
//! - `config`: the `[llm]` settings and `APOGEE_LLM_*` variables ([`LlmSettings`] →
//!   [`LlmConfig`]).
//! - `wire`: the request, message, tool and stream-chunk types, kept in this one module.
//! - `sse`: server-sent events, decoded from bytes in any pieces, bounded.
//! - `client`: [`LlmClient`], one streamed call with retries and timeouts, read as a
//!   [`ChatStream`] of text pieces ending in a [`Completion`].
//! - `fake` (feature `test-support`): a fake OpenAI-compatible server on loopback speaking
//!   real HTTP and SSE, scripted per test.
//!
//! What the model is asked and which tools it may call is the agents crate's planner; this
//! crate knows nothing of Apogee's questions or data.

mod client;
mod config;
#[cfg(feature = "test-support")]
pub mod fake;
mod sse;
mod wire;

pub use client::{
    ChatStream, Completion, LlmClient, LlmError, LlmStats, MAX_REPLY_BYTES, MAX_TOOL_CALLS,
    StreamItem,
};
pub use config::{ApiKey, LlmConfig, LlmSettings, SettingsError};
pub use sse::{MAX_EVENT_BYTES, SseDecoder, SseError};
pub use wire::{FunctionCall, FunctionDef, Message, PromptTokensDetails, Tool, ToolCall, Usage};
