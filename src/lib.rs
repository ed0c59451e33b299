//! Mescon: self-hosted chat and calls in one program. This crate holds the application (configuration,
//! HTTP/WebSocket API, auth, store, chat, call signalling); the SFU lives in the `mescon-media` crate.

pub mod app;
pub mod auth;
pub mod avatar;
pub mod calls;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod http;
pub mod keys;
pub mod phone;
pub mod realtime;
pub mod server;
pub mod store;
pub mod turn;
