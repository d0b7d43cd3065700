//! Getting what happened to the CRMs: the `[[crm]]` connectors with their planners, the
//! durable outbox worker (lanes, rate limits, batching, retries, dead letters, metrics), call
//! recordings converted to MP3 and handed over as signed links, and faithful fakes of the
//! cloud CRMs for tests.
//!
//! A crate because delivery is the product's promise of "no lost record", and more than one
//! part of pbxlink stands on it: `run` queues and delivers, the FastAGI lookups send through
//! it, the CLI tests connectors and reads the queue. It is an I/O crate (HTTP to the CRMs,
//! tokio tasks, files); what to send is decided in the sans-IO `crm` crate, where rows wait
//! in `store`.

pub mod outbox;
pub mod recordings;
pub mod shutdown;
