//! `pbxlink release check`: walks the sequence FreePBX's module admin runs against a release
//! server (update check, HTTP/1.0 HEAD, POST download through a 303, checksums, untar,
//! `module.xml`) and reports one line per step, naming the step that would break FreePBX.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use md5::Digest as _;
use reqwest::header::{HeaderMap, CONTENT_ENCODING, LOCATION};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::version;

/// FreePBX's effective timeout for each request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The steps, in FreePBX's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    UpdateCheck,
    Head,
    Download,
    Checksum,
    Untar,
    ModuleXml,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::UpdateCheck => "update-check",
            Step::Head => "head",
            Step::Download => "download",
            Step::Checksum => "checksum",
            Step::Untar => "untar",
            Step::ModuleXml => "module.xml",
        })
    }
}

/// A step that would fail (or mislead) FreePBX.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct Failure {
    pub step: Step,
    pub message: String,
}

fn fail<T>(step: Step, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        step,
        message: message.into(),
    })
}

/// The TLS client config: the web PKI roots, plus the certificates in `ca_file` (a
/// self-signed server's, for trials).
fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.with_context(|| format!("{}: bad PEM", path.display()))?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Runs every step against `base` (`https://host[:port]`, optionally with `/c/TOKEN`),
/// printing a line per step to `out`. The error names the first failing step.
pub async fn check(
    base: &str,
    rawname: &str,
    installed: &str,
    ca_file: Option<&Path>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Result<(), Failure>> {
    let tls = tls_config(ca_file)?;
    let client = |redirects| {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .user_agent("php-requests/1.8 (pbxlink release check)")
            .timeout(TIMEOUT)
            .redirect(redirects)
            .build()
    };
    // PHP Requests follows up to 10 redirects; the POST is sent by hand so its status is seen.
    let following = client(reqwest::redirect::Policy::limited(10))?;
    let not_following = client(reqwest::redirect::Policy::none())?;
    Ok(run_steps(
        base,
        rawname,
        installed,
        &tls,
        &following,
        &not_following,
        out,
    )
    .await)
}

async fn run_steps(
    base: &str,
    rawname: &str,
    installed: &str,
    tls: &rustls::ClientConfig,
    following: &reqwest::Client,
    not_following: &reqwest::Client,
    out: &mut impl std::io::Write,
) -> Result<(), Failure> {
    let mut ok = |step: Step, what: String| {
        let _ = writeln!(out, "ok   {step}: {what}");
    };

    // 1. The update check: the updateurl as written, a plain GET.
    let url = format!(
        "{}/getModuleUpdate/{rawname}/{installed}",
        base.trim_end_matches('/')
    );
    if !url.starts_with("https://") {
        return fail(
            Step::UpdateCheck,
            format!("{url} is not https: FreePBX never checks it"),
        );
    }
    let response = following
        .get(&url)
        .send()
        .await
        .or_else(|e| fail(Step::UpdateCheck, format!("GET {url}: {e}")))?;
    forbid_encoding(Step::UpdateCheck, response.headers())?;
    for header in ["x-current-uuid", "x-regenerate-id"] {
        if response.headers().contains_key(header) {
            return fail(
                Step::UpdateCheck,
                format!("the answer carries {header}, which FreePBX acts on"),
            );
        }
    }
    let status = response.status();
    let body = response
        .text()
        .await
        .or_else(|e| fail(Step::UpdateCheck, format!("reading the answer: {e}")))?;
    let parsed = serde_json::from_str::<serde_json::Value>(&body);
    if parsed.is_ok() && !status.is_success() {
        return fail(
            Step::UpdateCheck,
            format!(
                "error {status} with a JSON body ({}): FreePBX would take it as an update",
                body.trim()
            ),
        );
    }
    let offer = match parsed {
        Ok(offer @ serde_json::Value::Object(_)) => offer,
        _ if status.is_success() => {
            return fail(
                Step::UpdateCheck,
                format!("no update offered ({status}): {}", body.trim()),
            )
        }
        _ => return fail(Step::UpdateCheck, format!("{status}: {}", body.trim())),
    };
    let field = |name: &str| offer.get(name).and_then(|v| v.as_str());
    let (Some(offered_raw), Some(offered), Some(location), Some(md5sum)) = (
        field("rawname"),
        field("version"),
        field("location"),
        field("md5sum"),
    ) else {
        return fail(
            Step::UpdateCheck,
            format!("missing rawname, version, location or md5sum in {body}"),
        );
    };
    if offer.get("signed").is_some() {
        return fail(
            Step::UpdateCheck,
            "the offer has a `signed` field: FreePBX's GPG check would fail",
        );
    }
    if offered_raw != rawname {
        return fail(
            Step::UpdateCheck,
            format!("offers module {offered_raw}, not {rawname}"),
        );
    }
    if !version::compare(offered, installed).is_gt() {
        return fail(
            Step::UpdateCheck,
            format!("offers {offered}, not newer than the installed {installed}: FreePBX would install it anyway"),
        );
    }
    if !location.starts_with("https://") {
        return fail(Step::UpdateCheck, format!("location {location} is not absolute https: FreePBX fetches it from its own mirrors"));
    }
    let sha1sum = field("sha1sum");
    let sha256sum = field("sha256sum");
    ok(
        Step::UpdateCheck,
        format!("{status}, offers {rawname} {offered} at {location}"),
    );

    // 2. FreePBX's raw-socket HEAD: HTTP/1.0, a trailing '?', Host without port, read to EOF.
    let head = raw_head(location, tls)
        .await
        .or_else(|e| fail(Step::Head, format!("{e:#}")))?;
    let Some(head_length) = head.content_length else {
        return fail(
            Step::Head,
            format!("{} without Content-Length", head.status_line),
        );
    };
    ok(
        Step::Head,
        format!(
            "{}, Content-Length {head_length}, connection closed",
            head.status_line
        ),
    );

    // 3. The web module admin's POST; only a 303 turns it into a GET.
    let response = not_following
        .post(location)
        .send()
        .await
        .or_else(|e| fail(Step::Download, format!("POST {location}: {e}")))?;
    if response.status() != StatusCode::SEE_OTHER {
        return fail(
            Step::Download,
            format!(
                "POST answered {}, not 303 See Other: PHP Requests would POST again to the target",
                response.status()
            ),
        );
    }
    let Some(target) = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
    else {
        return fail(Step::Download, "303 without a Location");
    };
    let target = response
        .url()
        .join(target)
        .or_else(|e| fail(Step::Download, format!("bad Location {target}: {e}")))?;
    let response = following
        .get(target.clone())
        .send()
        .await
        .or_else(|e| fail(Step::Download, format!("GET {target}: {e}")))?;
    forbid_encoding(Step::Download, response.headers())?;
    if !response.status().is_success() {
        return fail(
            Step::Download,
            format!("GET {target} answered {}", response.status()),
        );
    }
    let tgz = response
        .bytes()
        .await
        .or_else(|e| fail(Step::Download, format!("reading {target}: {e}")))?;
    if tgz.len() as u64 != head_length {
        return fail(
            Step::Download,
            format!("{} bytes, but HEAD announced {head_length}", tgz.len()),
        );
    }
    ok(
        Step::Download,
        format!("POST 303 -> {target}, {} bytes", tgz.len()),
    );

    // 4. The checksums FreePBX verifies.
    let md5 = hex::encode(md5::Md5::digest(&tgz));
    if !md5.eq_ignore_ascii_case(md5sum) {
        return fail(
            Step::Checksum,
            format!("md5 {md5} but md5sum {md5sum} advertised"),
        );
    }
    let mut matching = String::new();
    for (name, advertised, digest) in [
        ("sha1", sha1sum, hex::encode(sha1::Sha1::digest(&tgz))),
        ("sha256", sha256sum, hex::encode(sha2::Sha256::digest(&tgz))),
    ] {
        let Some(advertised) = advertised else {
            continue;
        };
        if !digest.eq_ignore_ascii_case(advertised) {
            return fail(
                Step::Checksum,
                format!("{name} {digest} but {name}sum {advertised} advertised"),
            );
        }
        matching.push_str(&format!(", {name} matches"));
    }
    ok(Step::Checksum, format!("md5 {md5}{matching}"));

    // 5. and 6. The archive and its module.xml.
    let module = super::module::read_tarball(&tgz).or_else(|e| fail(Step::Untar, e.to_string()))?;
    ok(
        Step::Untar,
        format!("gzip tar with {}/module.xml", module.rawname),
    );
    if module.version != offered {
        return fail(
            Step::ModuleXml,
            format!("says version {}, the offer said {offered}", module.version),
        );
    }
    ok(
        Step::ModuleXml,
        format!(
            "{} {} ({}), updateurl {}",
            module.rawname,
            module.version,
            module.name,
            module.updateurl.as_deref().unwrap_or("none")
        ),
    );
    Ok(())
}

fn forbid_encoding(step: Step, headers: &HeaderMap) -> Result<(), Failure> {
    match headers.get(CONTENT_ENCODING) {
        Some(encoding) => fail(
            step,
            format!("Content-Encoding {encoding:?}: cURL and PHP Requests would both decode it and break the checksum"),
        ),
        None => Ok(()),
    }
}

/// What the raw HEAD saw.
struct Head {
    status_line: String,
    content_length: Option<u64>,
}

/// Sends the HEAD exactly as FreePBX's helper does and reads until the server closes.
async fn raw_head(location: &str, tls: &rustls::ClientConfig) -> anyhow::Result<Head> {
    let url = url::Url::parse(location)?;
    let host = url.host_str().context("location has no host")?.to_owned();
    let port = url
        .port_or_known_default()
        .context("location has no port")?;
    let request = format!("HEAD {}? HTTP/1.0\r\nHost: {host}\r\n\r\n", url.path());
    let tcp = tokio::time::timeout(
        TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .context("connect timed out")??;
    let server_name =
        rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()));
    let mut stream = connector
        .connect(server_name, tcp)
        .await
        .context("TLS handshake")?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .context("the server kept the HTTP/1.0 connection open: FreePBX would hang forever")?
        .or_else(|e| {
            // Some servers close without TLS close_notify; the answer is complete anyway.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
    let answer = String::from_utf8_lossy(&answer);
    let mut lines = answer.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    if !status_line.starts_with("HTTP/") {
        anyhow::bail!("not an HTTP answer: {status_line:?}");
    }
    let content_length = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok());
    Ok(Head {
        status_line,
        content_length,
    })
}
