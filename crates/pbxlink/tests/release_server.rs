//! `pbxlink release-server` against real HTTP clients (curl, raw sockets, `release check`), one
//! test per point of FreePBX's updater contract (../shared/docs/freepbx-updater-contract.md).

mod release_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use expect_test::expect;
use md5::Digest as _;
use release_support::{curl, eventually, module_tgz, tgz, Site, PUBLISH_KEY};

/// A site with `demo` 1.0.0 and 1.1.0 on stable, 1.2.0 on beta.
fn demo_site() -> Site {
    let site = Site::new("");
    site.publish("demo", "1.0.0", "stable");
    site.publish("demo", "1.1.0", "stable");
    site.publish("demo", "1.2.0", "beta");
    site
}

/// Status, content type and body, with the parts that change per run (port, dates) masked.
fn answer(site: &Site, url: &str, extra: &[&str]) -> String {
    let mut args = vec!["--include", url];
    args.extend_from_slice(extra);
    let raw = curl(&site.cert(), &args);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("-");
    let body = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut json) => {
            mask(&mut json);
            serde_json::to_string_pretty(&json).unwrap()
        }
        Err(_) => body.to_owned(),
    };
    format!("{status} ({content_type})\n{body}").replace(url.split('/').nth(2).unwrap(), "HOST")
}

fn mask(json: &mut serde_json::Value) {
    for key in ["md5sum", "sha1sum", "sha256sum", "packaged"] {
        if json.get(key).is_some() {
            json[key] = key.into();
        }
    }
    if let Some(previous) = json.get_mut("previous").and_then(|p| p.as_array_mut()) {
        previous.iter_mut().for_each(mask);
    }
}

#[test]
fn update_offers_only_newer_versions_and_errors_are_plain_text() {
    let site = demo_site();
    let server = site.serve(&["--self-signed"]);
    let get = |path: &str| answer(&site, &server.url(path), &[]);
    expect![[r#"
        HTTP/1.1 200 OK (application/json)
        {
          "changelog": "*1.1.0* release 1.1.0",
          "depends": {
            "module": [
              "core"
            ],
            "version": [
              "16.0"
            ]
          },
          "license": "Apache-2.0",
          "location": "https://HOST/getModuleFile/demo/1.1.0.tgz",
          "md5sum": "md5sum",
          "name": "Test demo",
          "packaged": "packaged",
          "previous": [
            {
              "changelog": "*1.0.0* release 1.0.0",
              "location": "https://HOST/getModuleFile/demo/1.0.0.tgz",
              "md5sum": "md5sum",
              "rawname": "demo",
              "version": "1.0.0"
            }
          ],
          "publisher": "pbxlink tests",
          "rawname": "demo",
          "sha1sum": "sha1sum",
          "sha256sum": "sha256sum",
          "version": "1.1.0"
        }"#]]
    .assert_eq(&get("/getModuleUpdate/demo/0.9"));
    // Equal or higher installed versions are never offered anything (FreePBX would
    // "upgrade" to whatever differs).
    expect![[r#"
        HTTP/1.1 200 OK (text/plain; charset=utf-8)
        no update: demo 1.1.0 is current
    "#]]
    .assert_eq(&get("/getModuleUpdate/demo/1.1.0"));
    expect![[r#"
        HTTP/1.1 200 OK (text/plain; charset=utf-8)
        no update: demo 2.0 is current
    "#]]
    .assert_eq(&get("/getModuleUpdate/demo/2.0"));
    // A trailing '?' changes nothing; a customer URL needs a customer's token.
    let stable = get("/getModuleUpdate/demo/1.0.0?");
    assert!(stable.contains("\"version\": \"1.1.0\""), "{stable}");
    assert!(!stable.contains("\"signed\""), "{stable}");
    expect![[r#"
        HTTP/1.1 403 Forbidden (text/plain; charset=utf-8)
        unknown or revoked customer token
    "#]]
    .assert_eq(&get("/c/nobody/getModuleUpdate/demo/1.1.0"));
    expect![[r#"
        HTTP/1.1 404 Not Found (text/plain; charset=utf-8)
        unknown module other
    "#]]
    .assert_eq(&get("/getModuleUpdate/other/1.0"));
    expect![[r#"
        HTTP/1.1 404 Not Found (text/plain; charset=utf-8)
        not found
    "#]]
    .assert_eq(&get("/nowhere"));
}

#[test]
fn head_post_and_download_follow_the_contract() {
    let site = demo_site();
    let server = site.serve(&["--self-signed"]);
    let file = server.url("/getModuleFile/demo/1.1.0.tgz");

    // HEAD over HTTP/1.0 with a trailing '?': exact length, download name, connection closed.
    let head = curl(&site.cert(), &["--http1.0", "--head", &format!("{file}?")]);
    let tarball = module_tgz("demo", "1.1.0");
    let stored = std::fs::read(site.dir.path().join("data/releases").join(format!(
        "{}.tgz",
        hex::encode(sha2::Sha256::digest(&tarball))
    )));
    let length = stored.map(|s| s.len()).unwrap_or(tarball.len());
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {length}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("content-disposition: attachment; filename=\"demo-1.1.0.tgz\"\r\n"),
        "{head}"
    );

    // POST (the web module admin) and GET (fwconsole) both get 303, never 302.
    for method in ["POST", "GET"] {
        let seen = curl(
            &site.cert(),
            &[
                "-X",
                method,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                &file,
            ],
        );
        let (status, target) = seen.split_once(' ').unwrap();
        assert_eq!(status, "303", "{method}");
        assert!(target.starts_with(&server.url("/files/")), "{target}");
    }

    // What curl downloads through the redirect (asking for gzip, which must not be applied)
    // has the advertised md5 and the announced length.
    let offer: serde_json::Value = serde_json::from_str(&curl(
        &site.cert(),
        &[&server.url("/getModuleUpdate/demo/1.0.0")],
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("demo.tgz");
    let headers = curl(
        &site.cert(),
        &[
            // A POST that curl, like PHP Requests, turns into a GET on 303 only.
            "--data",
            "",
            "--location",
            "--header",
            "Accept-Encoding: gzip, deflate",
            "--dump-header",
            "-",
            "-o",
            saved.to_str().unwrap(),
            offer["location"].as_str().unwrap(),
        ],
    );
    assert!(
        !headers.to_ascii_lowercase().contains("content-encoding"),
        "{headers}"
    );
    let bytes = std::fs::read(&saved).unwrap();
    assert_eq!(bytes.len(), length);
    assert_eq!(hex::encode(md5::Md5::digest(&bytes)), offer["md5sum"]);
    assert_eq!(hex::encode(sha1::Sha1::digest(&bytes)), offer["sha1sum"]);

    // latest.tgz is the newest stable release.
    let latest = curl(
        &site.cert(),
        &["--head", &server.url("/getModuleFile/demo/latest.tgz")],
    );
    assert!(latest.contains("filename=\"demo-1.1.0.tgz\""), "{latest}");
}

/// FreePBX's raw-socket helper, byte for byte, over TLS: it reads until the server closes.
#[test]
fn raw_http10_head_with_trailing_question_mark_is_answered_and_closed() {
    let site = demo_site();
    let server = site.serve(&["--self-signed"]);
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(site.cert()).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(&server.addr).unwrap();
    // The contract: an HTTP/1.0 connection left open hangs FreePBX; 1 s bounds the wait.
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    stream
        .write_all(b"HEAD /getModuleFile/demo/1.1.0.tgz? HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(read.is_ok(), "connection not closed within 1 s: {read:?}");
    let answer = String::from_utf8(answer).unwrap();
    let length = module_tgz("demo", "1.1.0").len();
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("content-length: {length}\r\n")),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {answer}"
    );
}

#[test]
fn plain_http_behind_a_proxy_closes_http10_connections_too() {
    let site = demo_site();
    let server = site.serve(&[
        "--plain-http",
        "--public-url",
        "https://updates.example.com",
    ]);
    let mut tcp = TcpStream::connect(&server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    tcp.write_all(
        b"HEAD /getModuleFile/demo/1.0.0.tgz? HTTP/1.0\r\nHost: updates.example.com\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let read = tcp.read_to_string(&mut answer);
    assert!(read.is_ok(), "connection not closed within 1 s: {read:?}");
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    // Locations name the proxy's https address, never the plain listener.
    let mut tcp = TcpStream::connect(&server.addr).unwrap();
    tcp.write_all(b"GET /getModuleUpdate/demo/1.0.0 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(
        answer
            .contains("\"location\":\"https://updates.example.com/getModuleFile/demo/1.1.0.tgz\""),
        "{answer}"
    );
}

#[test]
fn yanked_releases_answer_410_and_are_never_offered() {
    let site = demo_site();
    let server = site.serve(&["--self-signed"]);
    let out = site.pbxlink(&[
        "release",
        "yank",
        "demo",
        "1.1.0",
        "--reason",
        "broken upgrade",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = server.url("/getModuleFile/demo/1.1.0.tgz");
    let status = eventually("the yank reaching the server", || {
        let status = curl(
            &site.cert(),
            &["-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", &file],
        );
        (status != "303").then_some(status)
    });
    assert_eq!(status, "410");
    let offer = curl(&site.cert(), &[&server.url("/getModuleUpdate/demo/0.9")]);
    assert!(offer.contains("\"version\":\"1.0.0\""), "{offer}");
    // Yanking twice is an error; the audit log keeps both the publishes and the yank.
    assert!(!site
        .pbxlink(&["release", "yank", "demo", "1.1.0"])
        .status
        .success());
    let audit = String::from_utf8(site.pbxlink(&["release", "audit"]).stdout).unwrap();
    let actions: Vec<_> = audit
        .lines()
        .map(|l| l.split(" by ").next().unwrap().split_once(' ').unwrap().1)
        .collect();
    expect![[r#"
        [
            "publish demo 1.0.0",
            "publish demo 1.1.0",
            "publish demo 1.2.0",
            "yank demo 1.1.0",
        ]
    "#]]
    .assert_debug_eq(&actions);
}

#[test]
fn path_traversal_and_bad_names_are_refused() {
    let site = demo_site();
    let server = site.serve(&["--self-signed"]);
    for path in [
        "/getModuleFile/../../../etc/passwd",
        "/getModuleFile/demo/..%2F..%2Fpbxlink.toml",
        "/getModuleFile/demo/..%2F..%2Fpbxlink.toml.tgz",
        "/getModuleFile/..%2Fdata/1.0.0.tgz",
        "/files/..%2F..%2Fpbxlink.toml",
        "/files/../pbxlink.toml",
        "/getModuleUpdate/demo/..%2F..",
    ] {
        let seen = curl(
            &site.cert(),
            &[
                "--path-as-is",
                "-o",
                "-",
                "-w",
                " %{http_code}",
                &server.url(path),
            ],
        );
        let status = seen.rsplit(' ').next().unwrap();
        assert!(matches!(status, "400" | "404"), "{path}: {seen}");
        assert!(
            !seen.contains("data_dir"),
            "{path} leaked the config: {seen}"
        );
    }
    // Archives that would unpack outside their directory are refused at publish.
    let evil = site.dir.path().join("evil.tgz");
    std::fs::write(
        &evil,
        tgz(&[
            (
                "evil/module.xml".into(),
                b"<module><rawname>evil</rawname><name>e</name><version>1.0</version></module>"
                    .to_vec(),
            ),
            ("evil/../../x".into(), b"x".to_vec()),
        ]),
    )
    .unwrap();
    let out = site.pbxlink(&[
        "release",
        "publish",
        evil.to_str().unwrap(),
        "--channel",
        "stable",
    ]);
    assert!(!out.status.success());
    expect![[r#"
        Error: evil.tgz

        Caused by:
            entry "evil/../../x" escapes the module directory (absolute path or '..')
    "#]]
    .assert_eq(
        &String::from_utf8_lossy(&out.stderr)
            .replace(&format!("{}/", site.dir.path().display()), ""),
    );
}

#[test]
fn publish_api_needs_a_fresh_signature_and_counts_are_kept() {
    let site = Site::new("");
    let server = site.serve(&["--self-signed"]);
    let body = site.dir.path().join("api-1.0.tgz");
    std::fs::write(&body, module_tgz("api", "1.0")).unwrap();
    let sign = |timestamp: &str, channel: &str| {
        // What a CI job does: openssl over "timestamp\nchannel\nsha256(body)".
        let digest = hex::encode(sha2::Sha256::digest(std::fs::read(&body).unwrap()));
        let text = format!("{timestamp}\n{channel}\n{digest}");
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(PUBLISH_KEY.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let post = |timestamp: &str, signature: &str| {
        curl(
            &site.cert(),
            &[
                "-w",
                " %{http_code}",
                "--data-binary",
                &format!("@{}", body.display()),
                "-H",
                &format!("X-Pbxlink-Timestamp: {timestamp}"),
                "-H",
                &format!("X-Pbxlink-Signature: {signature}"),
                &server.url("/api/v1/publish?channel=stable"),
            ],
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    assert_eq!(post(&now, &sign(&now, "beta")), "bad signature\n 401");
    assert_eq!(
        post("1000", &sign("1000", "stable")),
        format!(
            "{} 401",
            "x-pbxlink-timestamp is not within 300 s of the server's clock\n"
        )
    );
    assert_eq!(post(&now, &sign(&now, "stable")), "published api 1.0\n 201");
    assert_eq!(
        post(&now, &sign(&now, "stable")),
        "api 1.0 is already published (versions are never replaced; publish a new one)\n 409"
    );

    // One update check and two downloads, counted per version and written to the database.
    curl(
        &site.cert(),
        &["-o", "/dev/null", &server.url("/getModuleUpdate/api/0.1")],
    );
    for _ in 0..2 {
        curl(
            &site.cert(),
            &[
                "--data",
                "",
                "-L",
                "-o",
                "/dev/null",
                &server.url("/getModuleFile/api/1.0.tgz"),
            ],
        );
    }
    let row = eventually("the counts reaching the database", || {
        let list = String::from_utf8(site.pbxlink(&["release", "list"]).stdout).unwrap();
        let row: Vec<String> = list
            .lines()
            .nth(1)?
            .split_whitespace()
            .map(String::from)
            .collect();
        (row[6] == "2").then_some(row)
    });
    assert_eq!(
        [&row[..5], &row[6..]].concat(),
        [
            "api",
            "1.0",
            "stable",
            "live",
            &module_tgz("api", "1.0").len().to_string(),
            "2",
            "1"
        ]
    );
}

#[test]
fn signed_releases_carry_their_signature_and_verify() {
    let keys = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let site = Site::new(&format!(
        "[release]\nminisign_pubkey = \"{}\"\n",
        keys.pk.to_base64()
    ));
    let sign = |name: &str, tgz: &[u8], comment: &str| {
        let file = site.dir.path().join(name);
        std::fs::write(&file, tgz).unwrap();
        let sig = minisign::sign(None, &keys.sk, tgz, Some(comment), None).unwrap();
        std::fs::write(format!("{}.minisig", file.display()), sig.to_string()).unwrap();
        file.to_str().unwrap().to_owned()
    };
    let tgz = module_tgz("signed", "1.0.0");
    let file = sign("signed-1.0.0.tgz", &tgz, "signed 1.0.0 by the vendor");
    // Publishing picks up FILE.minisig and checks it against the configured key.
    site.ok(&["release", "publish", &file, "--channel", "stable"]);
    let sha256 = hex::encode(sha2::Sha256::digest(&tgz));
    let verified = site.ok(&["release", "verify", &file]);
    assert_eq!(
        verified,
        format!(
            "signed 1.0.0: {} bytes\nsha256 {sha256}\nmd5    {}\n\
             signature ok: signed 1.0.0 by the vendor\n",
            tgz.len(),
            hex::encode(md5::Md5::digest(&tgz))
        )
    );
    // Another file under that signature fails, and is refused at publish.
    let other = site.dir.path().join("signed-1.0.1.tgz");
    std::fs::write(&other, module_tgz("signed", "1.0.1")).unwrap();
    std::fs::copy(
        format!("{file}.minisig"),
        format!("{}.minisig", other.display()),
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let failed = site.pbxlink(&["release", "verify", other]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr)
            .contains("the signature does not match this file and key"),
        "{failed:?}"
    );
    assert!(!site
        .pbxlink(&["release", "publish", other, "--channel", "stable"])
        .status
        .success());

    // The server gives the sha256 in the update JSON and the signature beside the file.
    let server = site.serve(&["--self-signed"]);
    let offer: serde_json::Value = serde_json::from_str(&curl(
        &site.cert(),
        &[&server.url("/getModuleUpdate/signed/0.1")],
    ))
    .unwrap();
    assert_eq!(offer["sha256sum"], sha256.as_str());
    let served = curl(
        &site.cert(),
        &[&server.url(&format!("/files/{sha256}.tgz.minisig"))],
    );
    assert_eq!(
        served,
        std::fs::read_to_string(format!("{file}.minisig")).unwrap()
    );
}
