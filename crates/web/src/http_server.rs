//! Serving an axum app on a TCP listener, plain or TLS (rustls), HTTP/1.1 with upgrades
//! (WebSocket). hyper's own connection loop rather than `axum::serve`, for what that lacks:
//! TLS, and a deadline on the request head, so a client that sends its headers a byte at a
//! time (slowloris) cannot hold a connection and a task. Both servers use it: the API and
//! the release server; with it their TLS identity (certificate files, or self-signed).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Serves `app` until `stop` resolves; connections then open go on until they end. A client
/// has `head_timeout` for its TLS handshake, and as long again for its request head. Every
/// request carries `ConnectInfo<SocketAddr>` (the allow-list reads it).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    head_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        tokio::spawn(connection(
            tcp,
            peer,
            tls.clone(),
            app.clone(),
            head_timeout,
        ));
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    head_timeout: Duration,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let served = match tls {
        Some(tls) => match tokio::time::timeout(head_timeout, tls.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let io = TokioIo::new(stream);
                http.serve_connection(io, service).with_upgrades().await
            }
            Ok(Err(e)) => return tracing::debug!("{peer}: TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!("{peer}: TLS handshake timed out"),
        },
        None => {
            let io = TokioIo::new(tcp);
            http.serve_connection(io, service).with_upgrades().await
        }
    };
    if let Err(e) = served {
        tracing::debug!("{peer}: {e}");
    }
}

/// Where a server's TLS identity comes from.
#[derive(Debug)]
pub enum Identity {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// A fresh certificate for these names (trials and tests).
    SelfSigned {
        names: Vec<String>,
    },
}

/// The TLS acceptor, and for a self-signed identity its PEM certificate and SHA-256 fingerprint.
pub fn tls_acceptor(
    identity: &Identity,
) -> anyhow::Result<(tokio_rustls::TlsAcceptor, Option<(String, String)>)> {
    use anyhow::Context as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let (chain, key, generated) = match identity {
        Identity::Files { cert, key } => {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            let chain = rustls_pemfile::certs(&mut &read(cert)?[..])
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
            let key = rustls_pemfile::private_key(&mut &read(key)?[..])
                .with_context(|| format!("{}: not a PEM private key", key.display()))?
                .with_context(|| format!("{}: no private key in it", key.display()))?;
            (chain, key, None)
        }
        Identity::SelfSigned { names } => {
            let certified = rcgen::generate_simple_self_signed(names.clone())?;
            let der = certified.cert.der().clone();
            let fingerprint = fingerprint(&der);
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
            (vec![der], key, Some((certified.cert.pem(), fingerprint)))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            chain.into_iter().map(CertificateDer::into_owned).collect(),
            key,
        )?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), generated))
}

/// `AB:CD:...`, the form browsers and `openssl x509 -fingerprint -sha256` show.
fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    fn hello() -> Router {
        Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
            }),
        )
    }

    #[tokio::test]
    async fn serves_https_with_the_configured_certificate() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let identity = Identity::Files { cert, key };
        let (acceptor, _) = tls_acceptor(&identity).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Some(acceptor),
            hello(),
            Duration::from_secs(10),
            std::future::pending(),
        ));

        let trusting = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
            )
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/", addr.port());
        let body = trusting
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello 127.0.0.1");
        // A client that does not trust the certificate, or speaks plain HTTP, gets nothing.
        let stranger = reqwest::Client::builder()
            .resolve("localhost", addr)
            .build()
            .unwrap();
        assert!(stranger.get(&url).send().await.is_err());
        let plain = format!("http://localhost:{}/", addr.port());
        assert!(stranger.get(&plain).send().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_sending_its_head_a_byte_a_second_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            None,
            hello(),
            Duration::from_secs(10),
            std::future::pending(),
        ));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter());
        let mut sent = 0;
        for byte in head {
            // The paused clock jumps ahead whenever both sides wait: no real second passes.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut buf = [0u8; 256];
            match client.try_read(&mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                _ => {}
            }
            if client.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
        }
        // Closed by the server long before the 230-byte head was done (not hung forever).
        assert!(sent < 100, "still open after {sent} bytes, one a second");
    }
}
