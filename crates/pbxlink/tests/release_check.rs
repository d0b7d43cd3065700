//! `pbxlink release check` walks FreePBX's update sequence: it passes against the real
//! release server over TLS with a self-signed certificate, and names the failing step against
//! test doubles that break one point of the contract each (302, gzip, a lower version).

mod release_support;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, on, MethodFilter};
use expect_test::{expect, Expect};
use md5::Digest as _;
use release_support::{masked, module_tgz, Site};

fn check_output(site: &Site, base: &str, version: &str) -> (bool, String) {
    let out = site.pbxlink(&[
        "release",
        "check",
        base,
        "demo",
        version,
        "--ca-file",
        site.cert().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.success(), stdout)
}

#[test]
fn check_passes_against_the_release_server_over_tls() {
    let site = Site::new("");
    site.publish("demo", "1.0.0", "stable");
    site.publish("demo", "1.1.0", "stable");
    let server = site.serve(&["--self-signed"]);
    let fingerprint = server
        .fingerprint
        .clone()
        .expect("--self-signed prints a fingerprint");
    assert_eq!(fingerprint.split(':').count(), 32, "{fingerprint}");
    let (ok, stdout) = check_output(&site, &server.url(""), "1.0.0");
    expect![[r#"
        ok   update-check: 200 OK, offers demo 1.1.0 at https://HOST/getModuleFile/demo/1.1.0.tgz
        ok   head: HTTP/1.0 200 OK, Content-Length 308, connection closed
        ok   download: POST 303 -> https://HOST/files/DIGEST.tgz, 308 bytes
        ok   checksum: md5 DIGEST, sha1 matches, sha256 matches
        ok   untar: gzip tar with demo/module.xml
        ok   module.xml: demo 1.1.0 (Test demo), updateurl https://example.test/getModuleUpdate/demo/1.1.0
    "#]]
    .assert_eq(&masked(&stdout, &server.addr));
    assert!(ok);

    // Nothing newer than what is installed: the check says so and fails at the first step.
    let (ok, stdout) = check_output(&site, &server.url(""), "1.1.0");
    assert!(!ok);
    expect![[r#"
        FAIL update-check: no update offered (200 OK): no update: demo 1.1.0 is current
    "#]]
    .assert_eq(&stdout);
}

/// How a double breaks the contract.
#[derive(Clone, Copy)]
enum Fault {
    /// The download POST is answered 302.
    Found302,
    /// Download answers carry `Content-Encoding: gzip`.
    Gzip,
    /// The update check offers a lower version than installed.
    LowerVersion,
    /// Error bodies are JSON.
    JsonError,
    /// The advertised md5sum is not the file's.
    WrongMd5,
    /// HEAD answers without a Content-Length.
    NoLength,
    /// The HTTP/1.0 HEAD is answered but the connection is left open.
    KeepOpen,
}

/// A release server double, over TLS with the site's self-signed certificate.
fn double(site: &Site, fault: Fault) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::create_dir_all(site.cert().parent().unwrap()).unwrap();
    std::fs::write(site.cert(), certified.cert.pem()).unwrap();
    let tgz = module_tgz("demo", "1.1.0");
    let md5 = match fault {
        Fault::WrongMd5 => "0".repeat(32),
        _ => hex::encode(md5::Md5::digest(&tgz)),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let base = format!("https://{addr}");
    let offered = if matches!(fault, Fault::LowerVersion) {
        "0.9.0"
    } else {
        "1.1.0"
    };
    // KeepOpen: downloads live on a second listener that answers and never closes.
    let raw_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let files_base = match fault {
        Fault::KeepOpen => format!("https://{}", raw_listener.local_addr().unwrap()),
        _ => base.clone(),
    };
    let update = {
        let base = files_base;
        move || async move {
            if matches!(fault, Fault::JsonError) {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({"error": "no such module"})),
                )
                    .into_response();
            }
            axum::Json(serde_json::json!({
                "rawname": "demo", "version": offered, "md5sum": md5,
                "location": format!("{base}/getModuleFile/demo/{offered}.tgz"),
            }))
            .into_response()
        }
    };
    let file = {
        let base = base.clone();
        let length = tgz.len().to_string();
        move |method: axum::http::Method| async move {
            let status = match (method, fault) {
                // A body of unknown length: no Content-Length on the HEAD answer.
                (axum::http::Method::HEAD, Fault::NoLength) => {
                    return axum::body::Body::from_stream(futures::stream::empty::<
                        Result<axum::body::Bytes, std::io::Error>,
                    >())
                    .into_response()
                }
                (axum::http::Method::HEAD, _) => {
                    return (StatusCode::OK, [(header::CONTENT_LENGTH, length)]).into_response()
                }
                (_, Fault::Found302) => StatusCode::FOUND,
                _ => StatusCode::SEE_OTHER,
            };
            (
                status,
                [(header::LOCATION, format!("{base}/files/demo.tgz"))],
            )
                .into_response()
        }
    };
    let stored = move || async move {
        let mut response = tgz.clone().into_response();
        if matches!(fault, Fault::Gzip) {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        }
        response
    };
    let app = axum::Router::new()
        .route("/getModuleUpdate/{rawname}/{version}", get(update))
        .route(
            "/getModuleFile/{rawname}/{file}",
            on(
                MethodFilter::GET
                    .or(MethodFilter::HEAD)
                    .or(MethodFilter::POST),
                file,
            ),
        )
        .route("/files/demo.tgz", get(stored));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let raw_acceptor = acceptor.clone();
    let raw_length = module_tgz("demo", "1.1.0").len();
    runtime.spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut held = Vec::new();
        loop {
            let (tcp, _) = raw_listener.accept().await.unwrap();
            let Ok(mut tls) = raw_acceptor.accept(tcp).await else {
                continue;
            };
            let mut request = [0u8; 1024];
            let _ = tls.read(&mut request).await;
            let answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {raw_length}\r\n\r\n");
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.flush().await;
            held.push(tls);
        }
    });
    runtime.spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (base, runtime)
}

fn check_against(fault: Fault, expected: Expect) {
    let site = Site::new("");
    let (base, _runtime) = double(&site, fault);
    let (ok, stdout) = check_output(&site, &base, "1.0.0");
    assert!(!ok, "the check must fail: {stdout}");
    expected.assert_eq(&masked(
        stdout.lines().last().unwrap(),
        base.trim_start_matches("https://"),
    ));
}

#[test]
fn check_fails_on_a_302_download() {
    check_against(
        Fault::Found302,
        expect!["FAIL download: POST answered 302 Found, not 303 See Other: PHP Requests would POST again to the target"],
    );
}

#[test]
fn check_fails_on_a_gzipped_download() {
    check_against(
        Fault::Gzip,
        expect![[
            r#"FAIL download: Content-Encoding "gzip": cURL and PHP Requests would both decode it and break the checksum"#
        ]],
    );
}

#[test]
fn check_fails_on_a_lower_version() {
    check_against(
        Fault::LowerVersion,
        expect!["FAIL update-check: offers 0.9.0, not newer than the installed 1.0.0: FreePBX would install it anyway"],
    );
}

#[test]
fn check_fails_on_a_json_error_body() {
    check_against(
        Fault::JsonError,
        expect![[
            r#"FAIL update-check: error 404 Not Found with a JSON body ({"error":"no such module"}): FreePBX would take it as an update"#
        ]],
    );
}

#[test]
fn check_fails_on_a_wrong_md5() {
    check_against(
        Fault::WrongMd5,
        expect!["FAIL checksum: md5 DIGEST but md5sum DIGEST advertised"],
    );
}

#[test]
fn check_fails_on_a_head_without_content_length() {
    check_against(
        Fault::NoLength,
        expect!["FAIL head: HTTP/1.0 200 OK without Content-Length"],
    );
}

#[test]
fn check_fails_on_a_plain_http_update_url() {
    let site = Site::new("");
    let out = site.pbxlink(&["release", "check", "http://127.0.0.1:9", "demo", "1.0.0"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    expect![[r#"
        FAIL update-check: http://127.0.0.1:9/getModuleUpdate/demo/1.0.0 is not https: FreePBX never checks it
    "#]]
    .assert_eq(&stdout);
}

#[test]
fn check_fails_on_an_http10_head_left_open() {
    check_against(
        Fault::KeepOpen,
        expect!["FAIL head: the server kept the HTTP/1.0 connection open: FreePBX would hang forever: deadline has elapsed"],
    );
}
