//! The release server as it runs: its routes with the customer cabinet's, on the HTTP edge
//! (TLS, a deadline on handshakes and heads), until the process is stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;

use crate::server::{self, text, ReleaseServer};

/// How long a client may take over its TLS handshake, and over its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route of the release server.
pub fn app(server: Arc<ReleaseServer>) -> Router {
    server::routes()
        .merge(crate::cabinet::routes())
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .with_state(server)
}

/// Serves `app` on `listener`, over TLS when `tls` is given, HTTP/1 only (what FreePBX speaks).
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
) -> anyhow::Result<()> {
    // A client that never finishes its handshake or its request must not hold a task.
    web::http_server::serve(
        listener,
        tls,
        app,
        HANDSHAKE_TIMEOUT,
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// Binds, prints where it listens (and the self-signed fingerprint), and serves until killed.
pub async fn run(
    server: Arc<ReleaseServer>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    eprintln!(
        "release server listening on {}://{addr}, public URL {}",
        if tls.is_some() { "https" } else { "http" },
        server.public_url
    );
    tokio::spawn(server.clone().sync_forever());
    let app = app(server.clone());
    tokio::select! {
        served = serve(listener, tls, app) => served,
        _ = tokio::signal::ctrl_c() => {
            // Counts gathered since the last round are not lost on a clean stop.
            server.sync().await
        }
    }
}
