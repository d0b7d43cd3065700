//! The PBX from the outside: the tokio link to one Asterisk (AMI over TCP/TLS, AJAM over
//! HTTP), what the link reads on its own (endpoints, the CDR database) and the settings a
//! user changes through it (DND, forwarding, queue pause) and call control (click-to-call,
//! hangup, transfer, redirect). It sits on the sans-IO `ami`
//! codec the way quinn sits on quinn-proto: `ami::Session` decides, this crate owns the
//! socket, the timers and the reconnects.

pub mod ajam_client;
pub mod ami_client;
pub mod cdr;
pub mod control;
pub mod endpoints;
pub mod extensions;
pub mod secret;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use settings::{
    AjamConfig, AuthKind, OverflowPolicy, PbxConfig, Secret, SecretError, TrackerSettings,
    DEFAULT_SECRET_ENV,
};
