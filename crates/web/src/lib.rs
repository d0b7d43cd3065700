//! The HTTP edge: serving an axum app (plain or TLS, with a deadline on the request head),
//! the one error type handlers answer with, and API tokens. Both of pbxlink's servers stand
//! on it: the gateway's API and web UI, and the module release server.

pub mod error;
pub mod http_server;
pub mod tokens;

pub use error::ApiError;
