//! The realtime side: the registry of connected devices ([`Hub`]), the WebSocket session loop, and
//! the chat, presence and typing logic shared by the WebSocket and the REST endpoints.

pub mod chat;
pub mod connection;
pub mod frames;
pub mod hub;
pub mod presence;

pub use hub::{Device, Hub};
