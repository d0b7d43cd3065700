//! Shared by the release tests: module tarballs, the real `pbxlink release-server` as a child
//! process, `curl` and the `pbxlink` CLI.

#![allow(dead_code)] // each test file uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub const PUBLISH_KEY: &str = "test-publish-key";

/// A module tarball the way FreePBX wants it: `<rawname>/module.xml` and one more file.
pub fn module_tgz(rawname: &str, version: &str) -> Vec<u8> {
    let xml = format!(
        "<module>\n  <rawname>{rawname}</rawname>\n  <name>Test {rawname}</name>\n  \
         <version>{version}</version>\n  <publisher>pbxlink tests</publisher>\n  \
         <license>Apache-2.0</license>\n  <changelog>*{version}* release {version}</changelog>\n  \
         <updateurl>https://example.test/getModuleUpdate/{rawname}/{version}</updateurl>\n  \
         <depends><version>16.0</version><module>core</module></depends>\n</module>\n"
    );
    tgz(&[
        (format!("{rawname}/module.xml"), xml.into_bytes()),
        (format!("{rawname}/install.php"), b"<?php\n".to_vec()),
    ])
}

/// A gzip tar of these (path, bytes) entries, exactly as given (even hostile paths).
pub fn tgz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // set_path refuses '..'; write the name field directly to build hostile archives.
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A data directory and config for the CLI and the server.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Site {
    pub fn new(extra_config: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pbxlink.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n{extra_config}",
                dir.path().join("data").display().to_string()
            ),
        )
        .unwrap();
        Site { dir, config }
    }

    /// `pbxlink --config <site> ARGS`.
    pub fn pbxlink(&self, args: &[&str]) -> Output {
        self.pbxlink_env(args, &[])
    }

    /// [`Site::pbxlink`] with more environment variables.
    pub fn pbxlink_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(env.iter().copied())
            .env(PUBLISH_KEY_ENV, PUBLISH_KEY)
            // Error output is compared as text: no backtraces in it.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap()
    }

    /// Publishes a fresh tarball of `rawname` `version` with the CLI.
    pub fn publish(&self, rawname: &str, version: &str, channel: &str) {
        let file = self.dir.path().join(format!("{rawname}-{version}.tgz"));
        std::fs::write(&file, module_tgz(rawname, version)).unwrap();
        let out = self.pbxlink(&[
            "release",
            "publish",
            file.to_str().unwrap(),
            "--channel",
            channel,
        ]);
        assert!(
            out.status.success(),
            "publish failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("data/release-self-signed.pem")
    }

    /// `release customer add NAME`; its token.
    pub fn add_customer(&self, name: &str) -> String {
        let out = self.pbxlink(&["release", "customer", "add", name]);
        assert!(
            out.status.success(),
            "customer add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("token:"))
            .expect("customer add prints the token")
            .trim()
            .to_owned()
    }

    /// Runs a `pbxlink` command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pbxlink(args);
        assert!(
            out.status.success(),
            "pbxlink {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `pbxlink release-server --listen 127.0.0.1:0 EXTRA...` on this site.
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_env(extra, &[])
    }

    /// [`Site::serve`] with more environment variables (`PBXLINK_LOG`); everything the
    /// server writes to stderr is kept in [`Server::log`].
    pub fn serve_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .arg("--config")
            .arg(&self.config)
            .args(["release-server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env(PUBLISH_KEY_ENV, PUBLISH_KEY)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let mut fingerprint = None;
        let mut addr = None;
        for line in stderr.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some((_, fp)) = line.split_once("SHA-256 fingerprint ") {
                fingerprint = Some(fp.to_owned());
            }
            if let Some(rest) = line.strip_prefix("release server listening on ") {
                addr = Some(
                    rest.split_once("://")
                        .unwrap()
                        .1
                        .split(',')
                        .next()
                        .unwrap()
                        .to_owned(),
                );
                break;
            }
        }
        // Keep reading, so a chatty server never blocks on a full pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in stderr.map_while(Result::ok) {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server {
            child,
            addr: addr.expect("release-server never said where it listens"),
            fingerprint,
            log,
        }
    }
}

pub const PUBLISH_KEY_ENV: &str = "PBXLINK_PUBLISH_SECRET";

/// The running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub fingerprint: Option<String>,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// Runs curl (trusting `ca`) and returns its stdout; curl's own failure is a test failure.
pub fn curl(ca: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Repeats `check` until it returns `Some` (the server re-reads the database every 2 s);
/// the bound only keeps a broken server from hanging the suite.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what} never happened");
}

/// Masks what changes per run: the port, and digests (runs of 32 or more hex digits).
pub fn masked(text: &str, addr: &str) -> String {
    let mut out = String::new();
    let mut rest = text.replace(addr, "HOST");
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        let run = rest[start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        let digits = &rest[start..start + run];
        out.push_str(if run >= 32 { "DIGEST" } else { digits });
        rest = rest[start + run..].to_owned();
    }
    out + &rest
}
