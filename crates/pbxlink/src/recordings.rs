//! Demo mode's `[recordings]`: where the simulated PBX's MixMonitor (`sim`) writes. The
//! recordings worker itself is `delivery::recordings`.

use std::path::{Path, PathBuf};

use delivery::recordings::RecordingsConfig;

/// Demo mode's `[recordings]`: the simulated PBX writes its recordings under
/// `<data_dir>/demo-monitor`, naming them as a real one would.
pub fn demo_config(data_dir: &Path) -> RecordingsConfig {
    RecordingsConfig {
        pbx_dir: Some(PathBuf::from(sim::simulate::mixmonitor::PBX_DIR)),
        ..RecordingsConfig::new(data_dir.join("demo-monitor"))
    }
}
