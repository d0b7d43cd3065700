//! `pbxlink freepbx generate|package` through the real binary: the generated dialplan has the
//! shape of the real Asterisk configs in ../shared/fixtures and only jumps to contexts that
//! exist (its own, or FreePBX's as in the FreePBX-shaped fixture); `--check` finds drift; the
//! package installs through the release server as FreePBX would fetch it.

mod release_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use expect_test::expect;
use release_support::Site;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ))
}

/// A fixture file; a missing one fails the test (it must never be skipped silently).
fn fixture(path: &str) -> String {
    let path = fixtures().join(path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

const FREEPBX_CONFIG: &str =
    "[freepbx]\ngateway_ip = \"10.0.0.5\"\nagi_url = \"agi://10.0.0.5:4573\"\n\
                              update_url = \"https://releases.example.com\"\n";

fn generate(site: &Site, dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["freepbx", "generate", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = site.pbxlink_env(&args, &[("PBXLINK_AMI_SECRET", "s3cret")]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success(),
        text.replace(&dir.display().to_string(), "DIR"),
    )
}

/// What kind of line this is, in the terms of an `extensions.conf`.
fn shape(line: &str) -> &'static str {
    if line.trim().is_empty() {
        "blank"
    } else if line.starts_with(';') {
        "comment"
    } else if line.starts_with('[') && line.ends_with(']') {
        "[context]"
    } else if line.starts_with("include => ") {
        "include => context"
    } else if line.starts_with("exten => ") && line.split(',').nth(1) == Some("1") {
        "exten => pattern,1,App(args)"
    } else if line.starts_with(" same => n(") {
        " same => n(label),App(args)"
    } else if line.starts_with(" same => n,") {
        " same => n,App(args)"
    } else {
        "other"
    }
}

/// Contexts a dialplan defines, and those it sends calls to (Goto, GotoIf, Gosub, handlers).
fn contexts(dialplan: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let defined = dialplan
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']').map(String::from))
        .collect();
    let mut targets = BTreeSet::new();
    for line in dialplan.lines().filter(|l| !l.starts_with(';')) {
        for marker in ["Gosub(", "Goto(", "?", "hangup_handler_push)="] {
            for (i, _) in line.match_indices(marker) {
                let rest = &line[i + marker.len()..];
                // A location is `context,exten,priority`: a name followed by two more fields.
                let fields: Vec<&str> = rest.splitn(3, ',').collect();
                let name = fields[0];
                if fields.len() == 3
                    && !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    targets.insert(name.to_owned());
                }
            }
        }
    }
    (defined, targets)
}

#[test]
fn generated_dialplan_has_the_real_configs_shape_and_only_known_targets() {
    let site = Site::new(FREEPBX_CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = generate(&site, dir.path(), &[]);
    assert!(ok, "{out}");
    let ours = std::fs::read_to_string(dir.path().join("extensions_custom.conf")).unwrap();
    let real = fixture("asterisk-22/config/extensions.conf");
    let freepbx = fixture("asterisk-22-pjsip/config/pbx/extensions.conf");

    // Every kind of line we write appears in the real dialplans (includes: FreePBX-shaped).
    let real_shapes: BTreeSet<_> = real.lines().chain(freepbx.lines()).map(shape).collect();
    let our_shapes: BTreeSet<_> = ours.lines().map(shape).collect();
    assert!(!our_shapes.contains("other"), "{ours}");
    assert!(
        our_shapes.is_subset(&real_shapes),
        "{our_shapes:?} vs {real_shapes:?}"
    );
    // Parentheses and quotes balance on every line, as the config parser needs.
    for line in ours.lines().filter(|l| !l.starts_with(';')) {
        let depth = line.chars().try_fold(0i32, |d, c| match c {
            '(' => Some(d + 1),
            ')' => (d > 0).then(|| d - 1),
            _ => Some(d),
        });
        assert_eq!(depth, Some(0), "{line}");
        assert_eq!(line.matches('"').count() % 2, 0, "{line}");
    }

    // Every jump lands in a context we define or one FreePBX defines.
    let (defined, mut targets) = contexts(&ours);
    targets.extend(
        ours.lines()
            .filter_map(|l| l.strip_prefix("include => ").map(String::from)),
    );
    let (freepbx_defined, _) = contexts(&freepbx);
    let unknown: Vec<_> = targets
        .iter()
        .filter(|t| !defined.contains(*t) && !freepbx_defined.contains(*t))
        .collect();
    assert!(unknown.is_empty(), "jumps to unknown contexts {unknown:?}");
    expect![[r#"
        {
            "ext-did",
            "ext-did-catchall",
            "from-did-direct",
            "from-internal",
            "pbxlink-hangup",
            "pbxlink-inbound",
            "pbxlink-outbound",
            "pbxlink-record",
        }
    "#]]
    .assert_debug_eq(&targets);
    // The hooks are FreePBX's custom contexts: FreePBX includes from-pstn-custom first.
    assert!(freepbx.contains("[from-pstn]\ninclude => from-pstn-custom\n"));
    assert!(ours.contains("\n[from-pstn-custom]\n"));
}

#[test]
fn check_finds_drift_and_generate_keeps_the_integrators_lines() {
    let site = Site::new(FREEPBX_CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("extensions_custom.conf");
    std::fs::write(
        &custom,
        "[from-internal-custom]\nexten => 555,1,Playback(hello-world)\n",
    )
    .unwrap();

    let (ok, out) = generate(&site, dir.path(), &["--check"]);
    assert!(!ok);
    expect![[r#"
        DIR/extensions_custom.conf: missing: no pbxlink block
        DIR/manager_custom.conf: missing: no pbxlink block
        Error: extensions_custom.conf, manager_custom.conf out of date; run `pbxlink freepbx generate` (then `fwconsole reload`)
    "#]]
    .assert_eq(&out);

    assert!(generate(&site, dir.path(), &[]).0);
    let (ok, out) = generate(&site, dir.path(), &["--check"]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&custom).unwrap();
    assert!(text.starts_with(
        "[from-internal-custom]\nexten => 555,1,Playback(hello-world)\n\n; BEGIN pbxlink"
    ));

    // A hand edit inside the block is drift; regenerating twice changes nothing more.
    std::fs::write(&custom, text.replace("10.0.0.5:4573", "10.0.0.6:4573")).unwrap();
    let (ok, out) = generate(&site, dir.path(), &["--check"]);
    assert!(!ok);
    assert!(
        out.contains("DIR/extensions_custom.conf: differs from what pbxlink would generate"),
        "{out}"
    );
    assert!(generate(&site, dir.path(), &[]).0);
    assert!(generate(&site, dir.path(), &[]).0);
    assert_eq!(std::fs::read_to_string(&custom).unwrap(), text);
}

#[test]
fn package_installs_through_the_release_server_like_freepbx_fetches_it() {
    let site = Site::new(FREEPBX_CONFIG);
    let out_dir = site.dir.path().join("dist");
    for version in ["1.0.0", "1.1.0"] {
        let out = site.pbxlink(&[
            "freepbx",
            "package",
            "--version",
            version,
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tgz = out_dir.join(format!("pbxlink-{version}.tgz"));
        let published = site.pbxlink(&[
            "release",
            "publish",
            tgz.to_str().unwrap(),
            "--channel",
            "stable",
        ]);
        assert!(
            published.status.success(),
            "{}",
            String::from_utf8_lossy(&published.stderr)
        );
    }
    // The same input gives the same bytes (a rebuilt package keeps its md5).
    let first = std::fs::read(out_dir.join("pbxlink-1.1.0.tgz")).unwrap();
    site.pbxlink(&[
        "freepbx",
        "package",
        "--version",
        "1.1.0",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out_dir.join("pbxlink-1.1.0.tgz")).unwrap(),
        first
    );

    let server = site.serve(&["--self-signed"]);
    let out = site.pbxlink(&[
        "release",
        "check",
        &server.url(""),
        "pbxlink",
        "1.0.0",
        "--ca-file",
        site.cert().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.ends_with(
            "ok   module.xml: pbxlink 1.1.0 (pbxlink CRM integration), updateurl https://releases.example.com/getModuleUpdate/pbxlink/1.1.0\n"
        ),
        "{stdout}"
    );

    // What the tarball holds: module.xml, the hooks, the config blocks, no AMI secret.
    let listing = std::process::Command::new("tar")
        .args(["-tzf", out_dir.join("pbxlink-1.1.0.tgz").to_str().unwrap()])
        .output()
        .unwrap();
    expect![[r#"
        pbxlink/module.xml
        pbxlink/functions.inc.php
        pbxlink/install.php
        pbxlink/uninstall.php
        pbxlink/conf/extensions_custom.conf
        pbxlink/conf/manager_custom.conf
    "#]]
    .assert_eq(&String::from_utf8(listing.stdout).unwrap());
    let manager = std::process::Command::new("tar")
        .args([
            "-xzOf",
            out_dir.join("pbxlink-1.1.0.tgz").to_str().unwrap(),
            "pbxlink/conf/manager_custom.conf",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8(manager.stdout)
        .unwrap()
        .contains("secret = @PBXLINK_AMI_SECRET@\n"));
}

#[test]
fn package_for_a_customer_carries_its_checked_token_in_the_update_url() {
    let site = Site::new(FREEPBX_CONFIG);
    let acme = site.add_customer("acme");
    let globex = site.add_customer("globex");
    let out_dir = site.dir.path().join("dist");
    let package = |customer: &str, token: &str| {
        let out = site.pbxlink_env(
            &[
                "freepbx",
                "package",
                "--version",
                "1.0.0",
                "--customer",
                customer,
                "--out",
                out_dir.to_str().unwrap(),
            ],
            &[("PBXLINK_CUSTOMER_TOKEN", token)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stderr)
    };
    assert_eq!(package("acme", &acme), (true, String::new()));
    let module_xml = std::process::Command::new("tar")
        .args(["-xzOf"])
        .arg(out_dir.join("pbxlink-1.0.0-acme.tgz"))
        .arg("pbxlink/module.xml")
        .output()
        .unwrap();
    let module_xml = String::from_utf8(module_xml.stdout).unwrap();
    assert!(
        module_xml.contains(&format!(
            "<updateurl>https://releases.example.com/c/{acme}/getModuleUpdate/pbxlink/1.0.0</updateurl>"
        )),
        "{module_xml}"
    );
    // Another customer's token, a revoked one, or a typo ship nothing.
    site.ok(&["release", "customer", "revoke", "globex"]);
    expect![[r#"
        (
            false,
            "Error: that token belongs to another customer than globex\n",
        )
    "#]]
    .assert_debug_eq(&package("globex", &acme));
    expect![[r#"
        (
            false,
            "Error: that token is not a live customer token (revoked, or a typo?)\n",
        )
    "#]]
    .assert_debug_eq(&package("globex", &globex));
}
