//! The Apogee server: configuration, authentication, the WebSocket and REST endpoints, the
//! per-user event streams, and the runs that answer users' questions. The `apogee` binary
//! (`main.rs`) is a thin command-line front over [`app::serve`], [`demo_data::load`],
//! [`ingest::file::run`] and [`usage_delete::run`].

pub mod admission;
pub mod app;
pub mod auth;
pub mod budgets;
pub mod bus;
pub mod config;
pub mod costs;
pub mod demo_data;
mod extract;
pub mod handshake_limit;
pub mod heartbeat;
pub mod http_error;
pub mod hub;
pub mod ingest;
pub mod jwks;
pub mod jwt;
pub mod lease;
pub mod listener;
pub mod metrics;
pub mod oidc;
pub mod prices;
pub mod queue;
pub mod rate;
pub mod recovery;
pub mod rest;
pub mod runs;
pub mod session;
pub mod sink;
pub mod state;
pub mod static_ui;
mod sync;
pub mod traces;
pub mod usage_delete;
pub mod web_session;
pub mod ws;
