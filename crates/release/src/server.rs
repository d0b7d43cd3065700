//! `pbxlink release-server`: the HTTPS server FreePBX's module admin updates from.
//!
//! Every choice here follows `freepbx-updater-contract.md`: errors are plain text (FreePBX
//! takes any JSON body as update data, whatever the status), no version lower than or equal to
//! the installed one is ever offered (FreePBX installs any different version), HEAD carries the
//! exact `Content-Length`, GET and POST answer 303 (the only redirect on which PHP Requests
//! turns a POST into a GET), and no response is compressed (cURL and Requests would both
//! decode it and the checksum would fail). HTTP/1.0 connections are closed after the answer
//! by hyper itself: FreePBX's HEAD helper reads until the server closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::Router;
use chrono::{DateTime, Utc};
use store::{CustomerDownloads, InstallationSeen, Release, ReleaseCounts, Store};

use super::customize::{self, Digests};
use super::licensing::{self, Access, Denied, Licensing};
use super::publish::{self, PublishError};
use super::version;
use crate::ReleaseChannel;

/// How often the server re-reads the release list (publishes and yanks made with the CLI in
/// another process) and writes its counts.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct ReleaseServer {
    store: Store,
    files_dir: PathBuf,
    /// `https://host[:port]`, no trailing slash.
    pub(crate) public_url: String,
    publish_key: Option<Vec<u8>>,
    releases: RwLock<Arc<Vec<Listed>>>,
    /// The list before the current one: requests that took it just before a reload may still
    /// count into it, so its counters are collected once more, one round later.
    retired: Mutex<Option<Arc<Vec<Listed>>>>,
    licensing: RwLock<Arc<Licensing>>,
    /// Downloads through customer URLs since the last flush, by customer, module, version.
    customer_downloads: Mutex<HashMap<(String, String, String), u64>>,
    /// Where licensed modules were checked for updates from since the last flush: the latest
    /// check by customer, module and client address.
    installations: Mutex<HashMap<(String, String, String), DateTime<Utc>>>,
    /// Digests of customer copies of licensed releases, by token hash and published sha256.
    copies: Mutex<HashMap<(String, String), Arc<Digests>>>,
}

/// A release as the handlers see it, with its counters since the last flush (atomics: the
/// hot path takes no lock and allocates nothing to count).
#[derive(Debug)]
pub(super) struct Listed {
    stored: Release,
    /// `depends` parsed once, not per request.
    depends: Option<serde_json::Value>,
    downloads: AtomicU64,
    update_checks: AtomicU64,
}

impl std::ops::Deref for Listed {
    type Target = Release;
    fn deref(&self) -> &Release {
        &self.stored
    }
}

fn listed(releases: Vec<Release>) -> Arc<Vec<Listed>> {
    Arc::new(
        releases
            .into_iter()
            .map(|release| Listed {
                depends: release
                    .release
                    .depends
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok()),
                stored: release,
                downloads: AtomicU64::new(0),
                update_checks: AtomicU64::new(0),
            })
            .collect(),
    )
}

/// Takes the counters of `list` (leaving zeros) into `into`.
fn harvest(list: &[Listed], into: &mut HashMap<(String, String), (u64, u64)>) {
    for l in list {
        let downloads = l.downloads.swap(0, Ordering::Relaxed);
        let checks = l.update_checks.swap(0, Ordering::Relaxed);
        if downloads + checks > 0 {
            let key = (l.release.rawname.clone(), l.release.version.clone());
            let entry = into.entry(key).or_default();
            entry.0 += downloads;
            entry.1 += checks;
        }
    }
}

impl ReleaseServer {
    pub async fn new(
        store: Store,
        files_dir: PathBuf,
        public_url: String,
        publish_key: Option<Vec<u8>>,
    ) -> anyhow::Result<Arc<Self>> {
        let releases = store.releases().await?;
        let licensing = Licensing::load(&store).await?;
        Ok(Arc::new(Self {
            store,
            files_dir,
            public_url: public_url.trim_end_matches('/').to_owned(),
            publish_key,
            releases: RwLock::new(listed(releases)),
            retired: Mutex::default(),
            licensing: RwLock::new(Arc::new(licensing)),
            customer_downloads: Mutex::default(),
            installations: Mutex::default(),
            copies: Mutex::default(),
        }))
    }

    /// Writes the counts gathered since the last call and re-reads the release list.
    pub async fn sync(&self) -> anyhow::Result<()> {
        let mut gathered = HashMap::new();
        let current = self.snapshot();
        harvest(&current, &mut gathered);
        if let Some(retired) = self.retired.lock().unwrap().as_deref() {
            harvest(retired, &mut gathered);
        }
        let counts: Vec<ReleaseCounts> = gathered
            .into_iter()
            .map(
                |((rawname, version), (downloads, update_checks))| ReleaseCounts {
                    rawname,
                    version,
                    downloads,
                    update_checks,
                },
            )
            .collect();
        if !counts.is_empty() {
            if let Err(e) = self.store.add_release_counts(&counts).await {
                // Put them back: the next round writes them.
                for c in &counts {
                    if let Some(l) = current
                        .iter()
                        .find(|l| l.release.rawname == c.rawname && l.release.version == c.version)
                    {
                        l.downloads.fetch_add(c.downloads, Ordering::Relaxed);
                        l.update_checks
                            .fetch_add(c.update_checks, Ordering::Relaxed);
                    }
                }
                return Err(e.into());
            }
        }
        self.flush_customer_downloads().await?;
        self.flush_installations().await?;
        let fresh = listed(self.store.releases().await?);
        let licensing = Arc::new(Licensing::load(&self.store).await?);
        let old = std::mem::replace(&mut *self.releases.write().unwrap(), fresh);
        *self.retired.lock().unwrap() = Some(old);
        *self.licensing.write().unwrap() = licensing;
        Ok(())
    }

    async fn flush_installations(&self) -> anyhow::Result<()> {
        let gathered = std::mem::take(&mut *self.installations.lock().unwrap());
        if gathered.is_empty() {
            return Ok(());
        }
        let seen: Vec<InstallationSeen> = gathered
            .iter()
            .map(|((customer, rawname, address), &at)| InstallationSeen {
                customer: customer.clone(),
                rawname: rawname.clone(),
                address: address.clone(),
                at,
            })
            .collect();
        if let Err(e) = self.store.note_installations(&seen).await {
            // Put them back (a newer check meanwhile wins): the next round writes them.
            let mut pending = self.installations.lock().unwrap();
            for (key, at) in gathered {
                pending.entry(key).or_insert(at);
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn flush_customer_downloads(&self) -> anyhow::Result<()> {
        let gathered = std::mem::take(&mut *self.customer_downloads.lock().unwrap());
        if gathered.is_empty() {
            return Ok(());
        }
        let counts: Vec<CustomerDownloads> = gathered
            .iter()
            .map(
                |((customer, rawname, version), &downloads)| CustomerDownloads {
                    customer: customer.clone(),
                    rawname: rawname.clone(),
                    version: version.clone(),
                    downloads,
                },
            )
            .collect();
        if let Err(e) = self.store.add_customer_downloads(&counts).await {
            // Put them back: the next round writes them.
            let mut pending = self.customer_downloads.lock().unwrap();
            for (key, n) in gathered {
                *pending.entry(key).or_default() += n;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Keeps [`ReleaseServer::sync`] going; failures are logged and retried next round.
    pub async fn sync_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        loop {
            every.tick().await;
            if let Err(e) = self.sync().await {
                tracing::warn!("release server: syncing with the database failed: {e:#}");
            }
        }
    }

    pub(super) fn snapshot(&self) -> Arc<Vec<Listed>> {
        self.releases.read().unwrap().clone()
    }

    pub(super) fn licensing(&self) -> Arc<Licensing> {
        self.licensing.read().unwrap().clone()
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// The base of the URLs a request's answer points at: plain, or the customer's.
    pub(super) fn base(&self, via: &Via) -> String {
        match via {
            Via::Public => self.public_url.clone(),
            Via::Customer { token, .. } => format!("{}/c/{token}", self.public_url),
        }
    }

    pub(super) fn file_url(&self, via: &Via, rawname: &str, version: &str) -> String {
        format!("{}/getModuleFile/{rawname}/{version}.tgz", self.base(via))
    }

    /// The customer's copy of a licensed release (see `customize`), made off the runtime's
    /// threads: unpacking and packing again takes a while for a large module.
    async fn customer_copy(&self, token: &str, r: &Release) -> anyhow::Result<Vec<u8>> {
        let path = self.files_dir.join(format!("{}.tgz", r.release.sha256));
        let published = tokio::fs::read(&path).await?;
        let rawname = r.release.rawname.clone();
        let url = format!(
            "{}/c/{token}/getModuleUpdate/{rawname}/{}",
            self.public_url, r.release.version
        );
        Ok(tokio::task::spawn_blocking(move || {
            customize::with_update_url(&published, &rawname, &url)
        })
        .await??)
    }

    /// Size and digests of what `via` downloads of `r`: the published file's, or those of the
    /// customer's copy (computed once per customer and release).
    pub(super) async fn digests(&self, via: &Via<'_>, r: &Release) -> anyhow::Result<Arc<Digests>> {
        let Via::Customer {
            token,
            access: Access { licensed: true, .. },
        } = via
        else {
            let r = &r.release;
            return Ok(Arc::new(Digests {
                size: r.size,
                md5: r.md5.clone(),
                sha1: r.sha1.clone(),
                sha256: r.sha256.clone(),
            }));
        };
        let key = (licensing::token_hash(token), r.release.sha256.clone());
        if let Some(known) = self.copies.lock().unwrap().get(&key) {
            return Ok(known.clone());
        }
        let digests = Arc::new(Digests::of(&self.customer_copy(token, r).await?));
        self.copies.lock().unwrap().insert(key, digests.clone());
        Ok(digests)
    }
}

/// Who a request comes from: FreePBX on a plain path, or a customer's token.
#[derive(Debug)]
pub(super) enum Via<'a> {
    Public,
    Customer { token: &'a str, access: Access },
}

impl<'a> Via<'a> {
    /// Who may have `rawname`: anybody on the plain paths when it is public, a customer as
    /// its license says.
    pub(super) fn check(
        server: &ReleaseServer,
        token: Option<&'a str>,
        rawname: &str,
    ) -> Result<(Via<'a>, ReleaseChannel), Denied> {
        let licensing = server.licensing();
        match token {
            None => Ok((Via::Public, licensing.public(rawname)?)),
            Some(token) => {
                let access = licensing.access(token, rawname, Utc::now())?;
                let channel = access.channel;
                Ok((Via::Customer { token, access }, channel))
            }
        }
    }
}

/// What FreePBX's updater and the publish API reach; [`crate::app`] adds the cabinet. No
/// compression layer, on purpose (see the module docs).
pub fn routes() -> Router<Arc<ReleaseServer>> {
    let file_methods = MethodFilter::GET
        .or(MethodFilter::HEAD)
        .or(MethodFilter::POST);
    Router::new()
        .route("/getModuleUpdate/{rawname}/{version}", get(update))
        .route(
            "/c/{token}/getModuleUpdate/{rawname}/{version}",
            get(customer_update),
        )
        .route(
            "/getModuleFile/{rawname}/{file}",
            on(file_methods, module_file),
        )
        .route(
            "/c/{token}/getModuleFile/{rawname}/{file}",
            on(file_methods, customer_module_file),
        )
        .route("/files/{file}", get(stored_file))
        .route("/c/{token}/files/{file}", get(customer_stored_file))
        .route(
            "/api/v1/publish",
            post(publish_api).layer(DefaultBodyLimit::max(publish::MAX_TARBALL)),
        )
}

/// A plain-text answer: what every error and "no update" is.
pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn denied(why: Denied) -> Response {
    text(StatusCode::FORBIDDEN, why.to_string())
}

/// A failure on our side, logged (without the request path: it may hold a token).
fn internal(what: &str, e: anyhow::Error) -> Response {
    tracing::error!("release server: {what}: {e:#}");
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
}

async fn update(
    State(server): State<Arc<ReleaseServer>>,
    Path((rawname, installed)): Path<(String, String)>,
) -> Response {
    offer(&server, None, &rawname, &installed).await
}

async fn customer_update(
    State(server): State<Arc<ReleaseServer>>,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    Path((token, rawname, installed)): Path<(String, String, String)>,
) -> Response {
    let from = peer.ok().map(|ConnectInfo(addr)| addr.ip().to_canonical());
    offer(&server, Some((&token, from)), &rawname, &installed).await
}

/// The update JSON for the newest release above `installed` that the caller may have, or
/// plain text. `customer`: the token of a per-customer URL and the client's address.
async fn offer(
    server: &ReleaseServer,
    customer: Option<(&str, Option<IpAddr>)>,
    rawname: &str,
    installed: &str,
) -> Response {
    if !super::module::is_valid_rawname(rawname) || !version::is_valid(installed) {
        return text(StatusCode::BAD_REQUEST, "bad module name or version");
    }
    let token = customer.map(|(token, _)| token);
    let (via, channel) = match Via::check(server, token, rawname) {
        Ok(allowed) => allowed,
        Err(why) => return denied(why),
    };
    let releases = server.snapshot();
    let mut known = false;
    // Oldest first, so the last one is the offer and the others its `previous`.
    let mut newer: Vec<&Listed> = releases
        .iter()
        .filter(|r| r.release.rawname == rawname)
        .inspect(|_| known = true)
        .filter(|r| {
            r.yanked_at.is_none() && licensing::channel_named(&r.release.channel) <= channel
        })
        .filter(|r| version::compare(&r.release.version, installed).is_gt())
        .collect();
    if !known {
        return text(StatusCode::NOT_FOUND, format!("unknown module {rawname}"));
    }
    // An installation checking a licensed module it may have: where from, for the seats.
    if let (Via::Customer { access, .. }, Some((_, Some(from)))) = (&via, customer) {
        if access.licensed {
            let key = (
                access.customer.clone(),
                rawname.to_owned(),
                from.to_string(),
            );
            server.installations.lock().unwrap().insert(key, Utc::now());
        }
    }
    newer.sort_by(|a, b| version::compare(&a.release.version, &b.release.version));
    let Some(latest) = newer.pop() else {
        if let Some(current) = releases
            .iter()
            .find(|r| r.release.rawname == rawname && r.release.version == installed)
        {
            current.update_checks.fetch_add(1, Ordering::Relaxed);
        }
        return text(
            StatusCode::OK,
            format!("no update: {rawname} {installed} is current"),
        );
    };
    latest.update_checks.fetch_add(1, Ordering::Relaxed);
    let mut previous = Vec::with_capacity(newer.len());
    for p in newer.iter().rev() {
        let digests = match server.digests(&via, p).await {
            Ok(d) => d,
            Err(e) => return internal("making the customer's copy", e),
        };
        previous.push(Previous {
            rawname: &p.release.rawname,
            version: &p.release.version,
            location: server.file_url(&via, &p.release.rawname, &p.release.version),
            md5sum: digests.md5.clone(),
            changelog: p.release.changelog.as_deref(),
        });
    }
    let digests = match server.digests(&via, latest).await {
        Ok(d) => d,
        Err(e) => return internal("making the customer's copy", e),
    };
    let r = &latest.release;
    let offer = Offer {
        rawname: &r.rawname,
        version: &r.version,
        location: server.file_url(&via, &r.rawname, &r.version),
        md5sum: &digests.md5,
        sha1sum: &digests.sha1,
        sha256sum: &digests.sha256,
        packaged: latest.published_at.timestamp(),
        name: &r.name,
        publisher: r.publisher.as_deref(),
        license: r.license.as_deref(),
        changelog: r.changelog.as_deref(),
        depends: latest.depends.as_ref(),
        previous,
    };
    axum::Json(offer).into_response()
}

/// The update JSON FreePBX reads (never a `signed` field: see the module docs). `sha256sum`
/// is ours (FreePBX ignores fields it does not know): the file's, for `release verify`.
#[derive(Debug, serde::Serialize)]
struct Offer<'a> {
    rawname: &'a str,
    version: &'a str,
    location: String,
    md5sum: &'a str,
    sha1sum: &'a str,
    sha256sum: &'a str,
    packaged: i64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    license: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changelog: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depends: Option<&'a serde_json::Value>,
    previous: Vec<Previous<'a>>,
}

/// A release between the installed one and the offer (FreePBX shows their changelogs).
#[derive(Debug, serde::Serialize)]
struct Previous<'a> {
    rawname: &'a str,
    version: &'a str,
    location: String,
    md5sum: String,
    changelog: Option<&'a str>,
}

async fn module_file(
    State(server): State<Arc<ReleaseServer>>,
    method: Method,
    Path((rawname, file)): Path<(String, String)>,
) -> Response {
    serve_module_file(&server, method, None, &rawname, &file).await
}

async fn customer_module_file(
    State(server): State<Arc<ReleaseServer>>,
    method: Method,
    Path((token, rawname, file)): Path<(String, String, String)>,
) -> Response {
    serve_module_file(&server, method, Some(&token), &rawname, &file).await
}

/// HEAD: size and name; GET/POST: 303 to where the bytes are.
async fn serve_module_file(
    server: &ReleaseServer,
    method: Method,
    token: Option<&str>,
    rawname: &str,
    file: &str,
) -> Response {
    let Some(wanted) = file.strip_suffix(".tgz") else {
        return text(StatusCode::NOT_FOUND, "module files end in .tgz");
    };
    if !super::module::is_valid_rawname(rawname)
        || (wanted != "latest" && !version::is_valid(wanted))
    {
        return text(StatusCode::BAD_REQUEST, "bad module name or version");
    }
    let via = match Via::check(server, token, rawname) {
        Ok((via, _)) => via,
        Err(why) => return denied(why),
    };
    let releases = server.snapshot();
    let release = if wanted == "latest" {
        releases
            .iter()
            .filter(|r| r.release.rawname == rawname && r.yanked_at.is_none())
            .filter(|r| r.release.channel == "stable")
            .max_by(|a, b| version::compare(&a.release.version, &b.release.version))
    } else {
        releases
            .iter()
            .find(|r| r.release.rawname == rawname && r.release.version == wanted)
    };
    let Some(release) = release else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no release {rawname} {wanted}"),
        );
    };
    if release.yanked_at.is_some() {
        return text(
            StatusCode::GONE,
            format!("{rawname} {wanted} was withdrawn"),
        );
    }
    let r = &release.release;
    if method == Method::HEAD {
        return match server.digests(&via, release).await {
            Ok(digests) => file_head(digests.size, &r.rawname, &r.version),
            Err(e) => internal("making the customer's copy", e),
        };
    }
    release.downloads.fetch_add(1, Ordering::Relaxed);
    let location = match &via {
        Via::Customer { token, access } => {
            let key = (
                access.customer.clone(),
                r.rawname.clone(),
                r.version.clone(),
            );
            *server
                .customer_downloads
                .lock()
                .unwrap()
                .entry(key)
                .or_default() += 1;
            access
                .licensed
                .then(|| format!("{}/c/{token}/files/{}.tgz", server.public_url, r.sha256))
        }
        Via::Public => None,
    };
    let location = location.unwrap_or_else(|| {
        r.location
            .clone()
            .unwrap_or_else(|| format!("{}/files/{}.tgz", server.public_url, r.sha256))
    });
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A bodiless answer announcing the file's exact size and download name.
fn file_head(size: u64, rawname: &str, version: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    // rawname and version are checked to be header-safe ASCII before we get here.
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{rawname}-{version}.tgz\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// `?published`: the tarball as published (what its signature covers), not the customer's copy.
#[derive(Debug, serde::Deserialize)]
struct FileQuery {
    published: Option<String>,
}

async fn stored_file(
    State(server): State<Arc<ReleaseServer>>,
    method: Method,
    Path(file): Path<String>,
) -> Response {
    serve_stored_file(&server, method, None, &file, false).await
}

async fn customer_stored_file(
    State(server): State<Arc<ReleaseServer>>,
    method: Method,
    Path((token, file)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    serve_stored_file(
        &server,
        method,
        Some(&token),
        &file,
        query.published.is_some(),
    )
    .await
}

/// The stored tarballs by SHA-256 (a name that cannot be anything but 64 hex digits), their
/// minisign signatures (`<sha256>.tgz.minisig`), and customers' copies of licensed ones.
async fn serve_stored_file(
    server: &ReleaseServer,
    method: Method,
    token: Option<&str>,
    file: &str,
    published: bool,
) -> Response {
    let (sha256, signature) = match file.strip_suffix(".tgz.minisig") {
        Some(sha256) => (sha256, true),
        None => (file.strip_suffix(".tgz").unwrap_or_default(), false),
    };
    let releases = server.snapshot();
    let Some(release) = releases.iter().find(|r| {
        sha256.len() == 64
            && r.release.sha256 == sha256
            && (r.release.location.is_none() || token.is_some())
    }) else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let r = &release.release;
    let via = match Via::check(server, token, &r.rawname) {
        Ok((via, _)) => via,
        Err(why) => return denied(why),
    };
    if release.yanked_at.is_some() {
        return text(StatusCode::GONE, "this release was withdrawn");
    }
    if signature {
        return match &r.minisig {
            Some(minisig) => minisig.clone().into_response(),
            None => text(StatusCode::NOT_FOUND, "this release is not signed"),
        };
    }
    let via = if published { Via::Public } else { via };
    let digests = match server.digests(&via, release).await {
        Ok(d) => d,
        Err(e) => return internal("making the customer's copy", e),
    };
    if method == Method::HEAD {
        return file_head(digests.size, &r.rawname, &r.version);
    }
    let bytes = match &via {
        Via::Customer {
            token,
            access: Access { licensed: true, .. },
        } => server.customer_copy(token, release).await,
        _ => tokio::fs::read(server.files_dir.join(format!("{sha256}.tgz")))
            .await
            .map_err(anyhow::Error::from),
    };
    match bytes {
        Ok(bytes) => {
            let mut response = file_head(digests.size, &r.rawname, &r.version);
            *response.body_mut() = Body::from(bytes);
            response
        }
        Err(e) => internal("reading the stored file", e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct PublishQuery {
    channel: ReleaseChannel,
    location: Option<String>,
}

/// `POST /api/v1/publish?channel=stable`: the tarball as the body, signed (see
/// `publish::verify`) so CI systems can publish without a login.
async fn publish_api(
    State(server): State<Arc<ReleaseServer>>,
    Query(query): Query<PublishQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = &server.publish_key else {
        return text(
            StatusCode::FORBIDDEN,
            "the publish API is disabled (no key configured)",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = publish::verify(
        key,
        header(publish::TIMESTAMP_HEADER),
        header(publish::SIGNATURE_HEADER),
        query.channel,
        &body,
        Utc::now(),
    ) {
        return text(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let published = publish::publish(
        &server.store,
        &server.files_dir,
        &body,
        publish::Options {
            channel: query.channel,
            location: query.location,
            minisig: None,
        },
        "api",
        Utc::now(),
    )
    .await;
    match published {
        Ok(r) => {
            if let Err(e) = server.sync().await {
                tracing::warn!("release server: reloading after a publish failed: {e:#}");
            }
            text(
                StatusCode::CREATED,
                format!("published {} {}", r.rawname, r.version),
            )
        }
        Err(e @ PublishError::Exists { .. }) => text(StatusCode::CONFLICT, e.to_string()),
        Err(e @ PublishError::Store(_)) | Err(e @ PublishError::Io(_)) => {
            tracing::error!("publish: {e:#}");
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
