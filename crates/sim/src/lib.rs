//! One fake Asterisk for tests, demo mode and benchmarks, in two forms: the simulator
//! ([`simulate`]: generated traffic, a deterministic FreePBX or bare Asterisk with its ground
//! truth, served over AMI) and the transcript replay server ([`replay_server`]: recorded
//! traffic, served with its original bytes and fault injection). [`replay`] reads transcripts
//! into AMI messages and runs the call tracker over them; [`stream_clock`] dates their events.
//! The two servers answer the manager session and the actions Asterisk answers the same way
//! whatever its traffic with one responder (`responder.rs`).
//!
//! A crate of its own because the binary's demo mode (`pbxlink run` with no `[[pbx]]`), its
//! `simulate`, `replay` and `ami serve` commands, the tests and the benches all use the same
//! fake Asterisk. It is an I/O crate (tokio TCP servers, files); it depends only on `ami` and
//! `calls`, and nothing in the workspace but the binary depends on it.

pub mod replay;
pub mod replay_server;
mod responder;
pub mod simulate;
pub mod stream_clock;
