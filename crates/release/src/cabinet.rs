//! The customer cabinet on the release server: `GET /cabinet` (web/cabinet.html) and its JSON.
//!
//! `/cabinet/api/customer` with a customer token as Bearer: its licenses and what it may
//! download (the same gate as FreePBX's routes), newest first, with changelogs and links.
//! `/cabinet/api/admin` with an admin API token (`pbxlink token create --scope admin`):
//! customers, licenses, downloads per customer and version, releases, the audit log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::{AuditEntry, CustomerDownloads, License};

use super::licensing::{self, channel_named, InUse};
use super::server::ReleaseServer;
use super::version;
use web::tokens::Scope;
use web::ApiError;

/// How many audit lines the admin view shows (newest first).
const AUDIT_LINES: usize = 200;

pub fn routes() -> Router<Arc<ReleaseServer>> {
    Router::new()
        .route("/cabinet", get(page))
        .route("/cabinet/api/customer", get(customer))
        .route("/cabinet/api/admin", get(admin))
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("../web/cabinet.html")),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a Bearer token is required"))
}

#[derive(Debug, Serialize)]
struct LicenseView {
    rawname: String,
    channel: String,
    valid_until: Option<DateTime<Utc>>,
    seats: u64,
    /// Addresses the module was checked for updates from lately ([`InUse`]):
    /// installations as near as FreePBX lets us tell (it sends no identity).
    seen: u64,
    /// `valid`, `expired` or `revoked`.
    state: &'static str,
}

impl LicenseView {
    fn of(l: License, now: DateTime<Utc>, in_use: &InUse) -> Self {
        let state = if l.revoked_at.is_some() {
            "revoked"
        } else if l.is_valid_at(now) {
            "valid"
        } else {
            "expired"
        };
        let seen = in_use.of(&l);
        Self {
            rawname: l.rawname,
            channel: l.channel,
            valid_until: l.valid_until,
            seats: l.seats,
            seen,
            state,
        }
    }
}

#[derive(Debug, Serialize)]
struct CustomerView {
    customer: String,
    licenses: Vec<LicenseView>,
    modules: Vec<ModuleView>,
}

#[derive(Debug, Serialize)]
struct ModuleView {
    rawname: String,
    name: String,
    licensed: bool,
    versions: Vec<VersionView>,
}

#[derive(Debug, Serialize)]
struct VersionView {
    version: String,
    channel: String,
    published_at: DateTime<Utc>,
    changelog: Option<String>,
    size: u64,
    /// Of the tarball as published (what its signature covers).
    sha256: String,
    /// The file for Module Admin (for a licensed module: the customer's copy, which goes on
    /// updating through the customer's URL); counted as a download.
    download: String,
    /// The tarball as published, and its minisign signature when it has one.
    published: String,
    signature: Option<String>,
}

/// `GET /cabinet/api/customer`.
async fn customer(
    State(server): State<Arc<ReleaseServer>>,
    headers: HeaderMap,
) -> Result<Json<CustomerView>, ApiError> {
    let token = bearer(&headers)?;
    let now = Utc::now();
    let name = server
        .store()
        .customer_by_hash(&licensing::token_hash(token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown or revoked customer token",
            )
        })?
        .name;
    let in_use = InUse::load(server.store(), now).await?;
    let licenses = server
        .store()
        .licenses()
        .await?
        .into_iter()
        .filter(|l| l.customer == name)
        .map(|l| LicenseView::of(l, now, &in_use))
        .collect();
    let licensing = server.licensing();
    let releases = server.snapshot();
    let mut modules: Vec<ModuleView> = Vec::new();
    // The store lists releases by module, then publication time.
    for listed in releases.iter().rev() {
        let r = &listed.release;
        let Ok(access) = licensing.access(token, &r.rawname, now) else {
            continue;
        };
        if listed.yanked_at.is_some() || channel_named(&r.channel) > access.channel {
            continue;
        }
        let files = format!("/c/{token}/files/{}.tgz", r.sha256);
        let version = VersionView {
            version: r.version.clone(),
            channel: r.channel.clone(),
            published_at: listed.published_at,
            changelog: r.changelog.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
            download: format!("/c/{token}/getModuleFile/{}/{}.tgz", r.rawname, r.version),
            published: format!("{files}?published"),
            signature: r.minisig.as_ref().map(|_| format!("{files}.minisig")),
        };
        match modules.iter_mut().find(|m| m.rawname == r.rawname) {
            Some(module) => module.versions.push(version),
            None => modules.push(ModuleView {
                rawname: r.rawname.clone(),
                name: r.name.clone(),
                licensed: access.licensed,
                versions: vec![version],
            }),
        }
    }
    for module in &mut modules {
        module
            .versions
            .sort_by(|a, b| version::compare(&b.version, &a.version));
    }
    modules.sort_by(|a, b| (!a.licensed, &a.rawname).cmp(&(!b.licensed, &b.rawname)));
    Ok(Json(CustomerView {
        customer: name,
        licenses,
        modules,
    }))
}

#[derive(Debug, Serialize)]
struct AdminView {
    customers: Vec<AdminCustomer>,
    downloads: Vec<CustomerDownloads>,
    releases: Vec<ReleaseView>,
    audit: Vec<AuditEntry>,
}

#[derive(Debug, Serialize)]
struct AdminCustomer {
    name: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    licenses: Vec<LicenseView>,
}

#[derive(Debug, Serialize)]
struct ReleaseView {
    rawname: String,
    version: String,
    channel: String,
    yanked: bool,
    signed: bool,
    sha256: String,
    downloads: u64,
    update_checks: u64,
}

/// `GET /cabinet/api/admin`.
async fn admin(
    State(server): State<Arc<ReleaseServer>>,
    headers: HeaderMap,
) -> Result<Json<AdminView>, ApiError> {
    let token = bearer(&headers)?;
    let store = server.store();
    let scope = store
        .token_by_hash(&hex::encode(web::tokens::digest(token)))
        .await?
        .and_then(|t| Scope::from_stored(&t.scope));
    if scope != Some(Scope::Admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin view needs an admin API token (pbxlink token create --scope admin)",
        ));
    }
    let now = Utc::now();
    let licenses = store.licenses().await?;
    let in_use = InUse::load(store, now).await?;
    let customers = store
        .customers()
        .await?
        .into_iter()
        .map(|(c, _)| AdminCustomer {
            licenses: licenses
                .iter()
                .filter(|l| l.customer == c.name)
                .map(|l| LicenseView::of(l.clone(), now, &in_use))
                .collect(),
            name: c.name,
            created_at: c.created_at,
            revoked_at: c.revoked_at,
        })
        .collect();
    let downloads = store.customer_downloads().await?;
    let releases = store
        .releases()
        .await?
        .into_iter()
        .map(|r| ReleaseView {
            yanked: r.yanked_at.is_some(),
            signed: r.release.minisig.is_some(),
            rawname: r.release.rawname,
            version: r.release.version,
            channel: r.release.channel,
            sha256: r.release.sha256,
            downloads: r.downloads,
            update_checks: r.update_checks,
        })
        .collect();
    let audit = store
        .release_audit()
        .await?
        .into_iter()
        .rev()
        .take(AUDIT_LINES)
        .collect();
    Ok(Json(AdminView {
        customers,
        downloads,
        releases,
        audit,
    }))
}
