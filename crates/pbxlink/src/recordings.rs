//! Demo mode's recordings: the simulated PBX's MixMonitor and the `[recordings]` it implies.
//! The recordings worker itself is `delivery::recordings`.

pub mod demo;

use std::path::{Path, PathBuf};

use delivery::recordings::RecordingsConfig;

/// Demo mode's `[recordings]`: the simulated PBX writes its recordings under
/// `<data_dir>/demo-monitor`, naming them as a real one would.
pub fn demo_config(data_dir: &Path) -> RecordingsConfig {
    RecordingsConfig {
        pbx_dir: Some(PathBuf::from(demo::PBX_DIR)),
        ..RecordingsConfig::new(data_dir.join("demo-monitor"))
    }
}
