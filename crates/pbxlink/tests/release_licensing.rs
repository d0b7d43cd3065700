//! Licensed modules on the real `pbxlink release-server`: customers, tokens and licenses made
//! with the CLI; FreePBX's sequence (`release check`) and curl through the `/c/{token}/` URLs.
//! A licensed download works end to end; no license, a revoked license or token, an expired
//! license and the plain URLs get 403 in plain text; tokens never reach a log or the database.

mod release_support;

use expect_test::expect;
use md5::Digest as _;
use release_support::{curl, eventually, masked, module_tgz, Site};

/// Status and body of a GET, the port masked.
fn get(site: &Site, url: &str) -> String {
    let seen = curl(&site.cert(), &["-w", "\n%{http_code}", url]);
    let (body, status) = seen.rsplit_once('\n').unwrap();
    format!("{status} {}", body.trim_end())
}

/// `release check` against a customer's URL; its output with token, port and digests masked.
fn check(site: &Site, base: &str, token: &str, rawname: &str, version: &str) -> String {
    let out = site.pbxlink(&[
        "release",
        "check",
        base,
        rawname,
        version,
        "--ca-file",
        site.cert().to_str().unwrap(),
    ]);
    let addr = base.split('/').nth(2).unwrap();
    let text = masked(
        &String::from_utf8(out.stdout)
            .unwrap()
            .replace(token, "TOKEN"),
        addr,
    );
    // A customer's copy carries its URL, so its compressed size varies with token and port.
    let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
    for i in 1..words.len() {
        let size = words[i - 1] == "Content-Length"
            || words.get(i + 1).is_some_and(|w| w.starts_with("bytes"));
        if size && words[i].trim_end_matches(',').parse::<u64>().is_ok() {
            words[i] = words[i].replace(|c: char| c.is_ascii_digit(), "");
            words[i].insert_str(0, "SIZE");
        }
    }
    words.join(" ")
}

#[test]
fn licensed_modules_reach_only_their_live_license_holders() {
    let site = Site::new("");
    site.publish("paid", "1.0.0", "stable");
    site.publish("paid", "1.1.0", "stable");
    site.publish("paid", "1.2.0", "beta");
    site.publish("free", "1.0.0", "stable");
    let acme = site.add_customer("acme");
    let globex = site.add_customer("globex");
    let initech = site.add_customer("initech");
    site.ok(&[
        "release", "license", "grant", "acme", "paid", "--seats", "3",
    ]);
    site.ok(&[
        "release",
        "license",
        "grant",
        "globex",
        "paid",
        "--channel",
        "beta",
        "--until",
        "2099-12-31",
    ]);
    let server = site.serve_env(&["--self-signed"], &[("PBXLINK_LOG", "trace")]);
    let customer = |token: &str| server.url(&format!("/c/{token}"));

    // FreePBX's whole sequence through acme's URL: update JSON, HTTP/1.0 HEAD, POST -> 303,
    // the file with the advertised md5/sha1/sha256, and a module.xml whose updateurl is acme's
    // own (so the installed copy goes on updating as acme).
    expect![[r#"
        ok   update-check: 200 OK, offers paid 1.1.0 at https://HOST/c/TOKEN/getModuleFile/paid/1.1.0.tgz
        ok   head: HTTP/1.0 200 OK, Content-Length SIZE, connection closed
        ok   download: POST 303 -> https://HOST/c/TOKEN/files/DIGEST.tgz, SIZE bytes
        ok   checksum: md5 DIGEST, sha1 matches, sha256 matches
        ok   untar: gzip tar with paid/module.xml
        ok   module.xml: paid 1.1.0 (Test paid), updateurl https://HOST/c/TOKEN/getModuleUpdate/paid/1.1.0
    "#]]
    .assert_eq(&check(&site, &customer(&acme), &acme, "paid", "1.0.0"));
    // The same by hand with curl: the bytes saved have the advertised md5.
    let offer: serde_json::Value = serde_json::from_str(&curl(
        &site.cert(),
        &[&format!("{}/getModuleUpdate/paid/1.0.0", customer(&acme))],
    ))
    .unwrap();
    let bytes = curl_bytes(&site, offer["location"].as_str().unwrap());
    assert_eq!(hex::encode(md5::Md5::digest(&bytes)), offer["md5sum"]);
    // globex follows beta.
    let beta = get(
        &site,
        &format!("{}/getModuleUpdate/paid/1.1.0", customer(&globex)),
    );
    assert!(beta.starts_with("200 {"), "{beta}");
    assert!(beta.contains("\"version\":\"1.2.0\""), "{beta}");

    // Everybody else: 403 in plain text (FreePBX takes any JSON for an update).
    let refused = [
        get(&site, &server.url("/getModuleUpdate/paid/1.0.0")),
        get(&site, &server.url("/getModuleFile/paid/1.1.0.tgz")),
        get(
            &site,
            &format!("{}/getModuleUpdate/paid/1.0.0", customer(&initech)),
        ),
        get(
            &site,
            &format!("{}/getModuleFile/paid/1.1.0.tgz", customer(&initech)),
        ),
        get(
            &site,
            &format!("{}/getModuleUpdate/paid/1.0.0", customer("pbxl_0000")),
        ),
    ];
    expect![[r#"
        [
            "403 paid is licensed: use your customer update URL (/c/TOKEN/getModuleUpdate/...)",
            "403 paid is licensed: use your customer update URL (/c/TOKEN/getModuleUpdate/...)",
            "403 no license for paid",
            "403 no license for paid",
            "403 unknown or revoked customer token",
        ]
    "#]]
    .assert_debug_eq(&refused);
    // The stored files of a licensed module are closed on the plain path too.
    let stored = |version| hex::encode(sha2::Sha256::digest(module_tgz("paid", version)));
    expect![[
        r#"403 paid is licensed: use your customer update URL (/c/TOKEN/getModuleUpdate/...)"#
    ]]
    .assert_eq(&get(
        &site,
        &server.url(&format!("/files/{}.tgz", stored("1.1.0"))),
    ));
    // A failure on the way is logged (and must not log the token in the path).
    std::fs::remove_file(
        site.dir
            .path()
            .join(format!("data/releases/{}.tgz", stored("1.2.0"))),
    )
    .unwrap();
    expect!["500 reading the stored file failed"].assert_eq(&get(
        &site,
        &format!("{}/files/{}.tgz", customer(&globex), stored("1.2.0")),
    ));
    // Public modules stay open on the plain paths, and to any live customer.
    assert!(get(&site, &server.url("/getModuleUpdate/free/0.1")).starts_with("200 {"));
    let free = get(
        &site,
        &format!("{}/getModuleUpdate/free/0.1", customer(&initech)),
    );
    assert!(free.contains("/c/"), "{free}");

    // An expired license stops updates; so do a revoked license and a revoked token.
    site.ok(&[
        "release",
        "license",
        "grant",
        "acme",
        "paid",
        "--until",
        "2020-01-01",
    ]);
    site.ok(&["release", "license", "revoke", "globex", "paid"]);
    site.ok(&["release", "customer", "revoke", "initech"]);
    let acme_update = format!("{}/getModuleUpdate/paid/1.0.0", customer(&acme));
    eventually("the expiry reaching the server", || {
        get(&site, &acme_update).starts_with("403").then_some(())
    });
    let refused = [
        get(&site, &acme_update),
        get(&site, offer["location"].as_str().unwrap()),
        get(
            &site,
            &format!("{}/getModuleUpdate/paid/1.1.0", customer(&globex)),
        ),
        get(
            &site,
            &format!("{}/getModuleUpdate/free/0.1", customer(&initech)),
        ),
    ];
    expect![[r#"
        [
            "403 the license for paid expired on 2020-01-02 00:00 UTC",
            "403 the license for paid expired on 2020-01-02 00:00 UTC",
            "403 the license for paid was revoked",
            "403 unknown or revoked customer token",
        ]
    "#]]
    .assert_debug_eq(&refused);

    // The downloads were counted for acme (release check's and curl's), as the admin view
    // shows; every change is in the audit log.
    let admin = site.ok(&["token", "create", "--name", "ops", "--scope", "admin"]);
    let admin = admin
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim();
    let (downloads, seats) = eventually("the download counts reaching the database", || {
        let view = curl(
            &site.cert(),
            &[
                "-H",
                &format!("Authorization: Bearer {admin}"),
                &server.url("/cabinet/api/admin"),
            ],
        );
        let view: serde_json::Value = serde_json::from_str(&view).unwrap();
        let downloads = view["downloads"].to_string();
        // Installations in use against the seats: the addresses that checked each licensed
        // module for updates (here all from loopback, so one each).
        let seats: Vec<String> = view["customers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                c["licenses"].as_array().unwrap().iter().map(move |l| {
                    format!(
                        "{} {} {}/{}",
                        c["name"], l["rawname"], l["seen"], l["seats"]
                    )
                })
            })
            .collect();
        (downloads.contains("acme") && seats.iter().any(|s| s.ends_with("1/1")))
            .then_some((downloads, seats))
    });
    expect![[r#"[{"customer":"acme","downloads":2,"rawname":"paid","version":"1.1.0"}]"#]]
        .assert_eq(&downloads);
    expect![[r#"
        [
            "\"acme\" \"paid\" 1/1",
            "\"globex\" \"paid\" 1/1",
        ]
    "#]]
    .assert_debug_eq(&seats);
    let audit = site.ok(&["release", "audit"]);
    let lines: Vec<&str> = audit
        .lines()
        .filter(|l| !l.contains(" publish "))
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    expect![[r#"
        [
            "customer-add customer acme by cli:unknown: ",
            "customer-add customer globex by cli:unknown: ",
            "customer-add customer initech by cli:unknown: ",
            "license-grant customer acme paid by cli:unknown: channel stable until no end seats 3",
            "license-grant customer globex paid by cli:unknown: channel beta until 2100-01-01T00:00:00+00:00 seats 1",
            "license-grant customer acme paid by cli:unknown: channel stable until 2020-01-02T00:00:00+00:00 seats 1",
            "license-revoke customer globex paid by cli:unknown: ",
            "customer-revoke customer initech by cli:unknown: ",
        ]
    "#]].assert_debug_eq(&lines);

    // No token in the server's log (at trace level), the CLI's listings or the database.
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("release server: reading the stored file: "),
        "{log}"
    );
    drop(server);
    let mut places = vec![
        ("server log", log),
        ("audit", audit),
        ("customer list", site.ok(&["release", "customer", "list"])),
        ("license list", site.ok(&["release", "license", "list"])),
    ];
    for file in std::fs::read_dir(site.dir.path().join("data")).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            places.push(("database", String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for token in [&acme, &globex, &initech] {
        for (place, text) in &places {
            assert!(!text.contains(token.as_str()), "a token in the {place}");
            // Not even its random part.
            assert!(!text.contains(&token[5..]), "a token in the {place}");
        }
    }
}

fn curl_bytes(site: &Site, url: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("file.tgz");
    curl(
        &site.cert(),
        &[
            "--data",
            "",
            "--location",
            "-o",
            saved.to_str().unwrap(),
            url,
        ],
    );
    std::fs::read(saved).unwrap()
}
