//! The deployment files in `deploy/` (Docker cannot run here): the compose file parses, takes
//! every secret from the environment, and the config it mounts passes `pbxlink check-config`;
//! the systemd unit passes `systemd-analyze verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn compose_takes_secrets_from_env_and_mounts_a_valid_config() {
    let text = std::fs::read_to_string(deploy().join("docker-compose.yml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let services = &doc["services"];
    assert!(!services["postgres"].is_badvalue(), "no postgres service");
    let pbxlink = &services["pbxlink"];
    assert_eq!(
        pbxlink["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert!(deploy().join("Dockerfile").exists());

    // Every variable given to pbxlink is a `${VAR:?...}` reference: no secret in the file.
    let Yaml::Hash(environment) = &pbxlink["environment"] else {
        panic!("pbxlink.environment is not a map");
    };
    let mut env = Vec::new();
    for (key, value) in environment {
        let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap());
        if key == "PBXLINK_CONFIG" {
            assert_eq!(value, "/etc/pbxlink/pbxlink.toml");
            continue;
        }
        assert!(
            value.starts_with("${") && value.contains(":?"),
            "{key} = {value}"
        );
        env.push((key.to_owned(), "from-env".to_owned()));
    }

    // The config mounted at PBXLINK_CONFIG is the one in deploy/, and it checks out with
    // exactly the variables the compose file sets.
    let mounted: Vec<&str> = pbxlink["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        mounted.contains(&"./pbxlink.toml:/etc/pbxlink/pbxlink.toml:ro"),
        "{mounted:?}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .arg("check-config")
        .arg(deploy().join("pbxlink.toml"))
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy().join("pbxlink.service")).unwrap();
    // `verify` checks that ExecStart's binary exists: point it at the one under test.
    let unit = unit.replace("/usr/local/bin/pbxlink", env!("CARGO_BIN_EXE_pbxlink"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pbxlink.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect(
            "systemd-analyze is needed to check deploy/pbxlink.service (apt-get install systemd)",
        );
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
}
