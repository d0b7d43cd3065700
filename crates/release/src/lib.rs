//! FreePBX module distribution, pbxlink's second product: the FreePBX module generated and
//! packaged (`pbxlink freepbx`), the release server FreePBX's own updater accepts, with
//! licensing and the customer cabinet (`pbxlink release-server`), and its operator commands
//! (`pbxlink release publish|list|yank|audit|check|verify|customer|license`). It stands on
//! the HTTP edge (`web`) and the journal's release tables (`store`); the gateway does not
//! need it, and it does not need the gateway.

mod app;
mod cabinet;
mod check;
mod customers;
mod customize;
pub mod freepbx;
mod licensing;
pub mod module;
mod publish;
mod server;
pub mod settings;
mod signature;
pub mod version;

pub use customers::customer_update_url;
pub use settings::{ReleaseChannel, Settings};

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};

/// `pbxlink release-server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (default: `[release] listen`).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// The https base URL clients reach this server at (default: `[release] public_url`).
    #[arg(long)]
    public_url: Option<String>,
    /// Serve TLS with a fresh self-signed certificate (trials): prints its SHA-256
    /// fingerprint and writes it to `<data_dir>/release-self-signed.pem`.
    #[arg(long, conflicts_with = "plain_http")]
    self_signed: bool,
    /// Serve plain HTTP behind a TLS-terminating proxy (needs the proxy's https public URL).
    #[arg(long)]
    plain_http: bool,
}

/// `pbxlink release ...`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    /// Run FreePBX's update sequence against a server; one line per step.
    Check {
        /// Server base URL, `https://host[:port]` (or `https://host/c/TOKEN`).
        url: String,
        rawname: String,
        /// The installed version to check an update for.
        version: String,
        /// Also trust the certificates in this PEM file (a self-signed server's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Check a module tarball's minisign signature; print its digests and module.xml.
    Verify {
        file: PathBuf,
        /// The signature file (default: FILE.minisig).
        #[arg(long)]
        sig: Option<PathBuf>,
        /// The public key, base64 (`RW...`) or a minisign .pub file (default:
        /// `[release] minisign_pubkey`).
        #[arg(long)]
        pubkey: Option<String>,
    },
    #[command(flatten)]
    Manage(ManageCommand),
}

/// The commands that work on the release database.
#[derive(Debug, Subcommand)]
enum ManageCommand {
    /// Check a module tarball and publish it on a channel.
    Publish {
        file: PathBuf,
        #[arg(long, value_enum)]
        channel: ChannelArg,
        /// Serve the file from this https URL (CDN, S3) instead of from pbxlink.
        #[arg(long)]
        location: Option<String>,
        /// Its minisign signature (default: FILE.minisig when it exists); checked against
        /// `[release] minisign_pubkey` when set.
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// Every release with its digests, channel, state and counts.
    List,
    /// Withdraw a release: never offered again, its file answers 410.
    Yank {
        rawname: String,
        version: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The log of publishes, yanks, customers and licenses.
    Audit,
    /// Customers of licensed modules: add (prints the token once), list, revoke.
    Customer {
        #[command(subcommand)]
        command: customers::CustomerCommand,
    },
    /// Module licenses: grant, revoke, list.
    License {
        #[command(subcommand)]
        command: customers::LicenseCommand,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ChannelArg {
    Stable,
    Beta,
}

impl From<ChannelArg> for ReleaseChannel {
    fn from(c: ChannelArg) -> Self {
        match c {
            ChannelArg::Stable => ReleaseChannel::Stable,
            ChannelArg::Beta => ReleaseChannel::Beta,
        }
    }
}

fn files_dir(config: &Settings) -> PathBuf {
    config
        .release
        .files_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("releases"))
}

async fn open_store(config: &Settings) -> anyhow::Result<store::Store> {
    if config.embedded_database {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
    }
    Ok(store::Store::connect(&config.database_url).await?)
}

/// `pbxlink release-server`.
pub async fn serve(config: Settings, args: ServerArgs) -> anyhow::Result<()> {
    let listen = args.listen.unwrap_or(config.release.listen);
    let plain = args.plain_http || config.release.plain_http;
    let public_url = args
        .public_url
        .or_else(|| config.release.public_url.clone());
    if plain && public_url.is_none() {
        anyhow::bail!(
            "plain HTTP needs the TLS proxy's https URL: --public-url or [release] public_url"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let public_url = public_url.unwrap_or_else(|| format!("https://{bound}"));
    // FreePBX ignores any updateurl and download location that is not https.
    let parsed =
        url::Url::parse(&public_url).with_context(|| format!("public URL {public_url}"))?;
    if parsed.scheme() != "https" {
        anyhow::bail!("public URL {public_url} must be https: FreePBX never fetches anything else");
    }
    let tls = if plain {
        None
    } else {
        let identity = match (&config.release.tls_cert, &config.release.tls_key) {
            _ if args.self_signed => web::http_server::Identity::SelfSigned {
                names: vec![
                    parsed.host_str().unwrap_or("localhost").to_owned(),
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                ],
            },
            (Some(cert), Some(key)) => web::http_server::Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => anyhow::bail!(
                "TLS needs [release] tls_cert and tls_key (or --self-signed for a trial, \
                 or --plain-http behind a TLS proxy)"
            ),
        };
        let (acceptor, generated) = web::http_server::tls_acceptor(&identity)?;
        if let Some((pem, fingerprint)) = generated {
            std::fs::create_dir_all(&config.data_dir)?;
            let path = config.data_dir.join("release-self-signed.pem");
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "self-signed certificate {} SHA-256 fingerprint {fingerprint}",
                path.display()
            );
        }
        Some(acceptor)
    };
    let publish_key = std::env::var(&config.release.publish_secret_env)
        .ok()
        .filter(|k| !k.is_empty())
        .map(String::into_bytes);
    let store = open_store(&config).await?;
    let server =
        server::ReleaseServer::new(store, files_dir(&config), public_url, publish_key).await?;
    app::run(server, listener, tls).await
}

/// `pbxlink release ...`.
pub async fn run(config: Settings, args: ReleaseArgs) -> anyhow::Result<()> {
    let command = match args.command {
        ReleaseCommand::Check {
            url,
            rawname,
            version,
            ca_file,
        } => {
            let mut stdout = std::io::stdout();
            return check::check(&url, &rawname, &version, ca_file.as_deref(), &mut stdout)
                .await?
                .map_err(|failure| {
                    println!("FAIL {failure}");
                    anyhow::Error::new(failure)
                });
        }
        ReleaseCommand::Verify { file, sig, pubkey } => {
            return verify(&config, &file, sig.as_deref(), pubkey.as_deref());
        }
        ReleaseCommand::Manage(command) => command,
    };
    let store = open_store(&config).await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    match command {
        ManageCommand::Publish {
            file,
            channel,
            location,
            sig,
        } => {
            let tgz =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let minisig = signature::read_for(&file, sig.as_deref())?;
            if let (Some(minisig), Some(key)) = (&minisig, &config.release.minisign_pubkey) {
                signature::verify(&tgz, minisig, &signature::public_key(key)?)
                    .with_context(|| format!("{}: refusing to publish", file.display()))?;
            }
            let options = publish::Options {
                channel: channel.into(),
                location,
                minisig,
            };
            let r = publish::publish(
                &store,
                &files_dir(&config),
                &tgz,
                options,
                &actor,
                Utc::now(),
            )
            .await
            .with_context(|| format!("{}", file.display()))?;
            println!(
                "published {} {} on {}: {} bytes, md5 {}, sha256 {}",
                r.rawname, r.version, r.channel, r.size, r.md5, r.sha256
            );
        }
        ManageCommand::List => print!("{}", list_table(&store.releases().await?)),
        ManageCommand::Yank {
            rawname,
            version,
            reason,
        } => {
            if !store
                .yank_release(&rawname, &version, &actor, &reason, Utc::now())
                .await?
            {
                anyhow::bail!(
                    "no release {rawname} {version} to yank (unknown, or yanked already)"
                );
            }
            println!("yanked {rawname} {version}");
        }
        ManageCommand::Audit => {
            for e in store.release_audit().await? {
                let customer = e.customer.map(|c| format!("customer {c}"));
                let what = [Some(e.action), customer, Some(e.rawname), Some(e.version)];
                let what: Vec<String> = what
                    .into_iter()
                    .flatten()
                    .filter(|w| !w.is_empty())
                    .collect();
                println!(
                    "{} {} by {}: {}",
                    e.at.to_rfc3339(),
                    what.join(" "),
                    e.actor,
                    e.detail
                );
            }
        }
        ManageCommand::Customer { command } => {
            customers::customer(&store, &config, &actor, command).await?;
        }
        ManageCommand::License { command } => {
            customers::license(&store, &actor, command).await?;
        }
    }
    Ok(())
}

fn list_table(releases: &[store::Release]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "MODULE",
            "VERSION",
            "CHANNEL",
            "STATE",
            "SIZE",
            "MD5",
            "DOWNLOADS",
            "CHECKS",
        ]);
    for r in releases {
        table.add_row([
            r.release.rawname.clone(),
            r.release.version.clone(),
            r.release.channel.clone(),
            if r.yanked_at.is_some() {
                "yanked"
            } else {
                "live"
            }
            .to_owned(),
            r.release.size.to_string(),
            r.release.md5.clone(),
            r.downloads.to_string(),
            r.update_checks.to_string(),
        ]);
    }
    format!("{table}\n")
}

/// `pbxlink release verify`: the signature (when a key is known), the digests, module.xml.
fn verify(
    config: &Settings,
    file: &std::path::Path,
    sig: Option<&std::path::Path>,
    pubkey: Option<&str>,
) -> anyhow::Result<()> {
    let tgz = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let module = module::read_tarball(&tgz).with_context(|| format!("{}", file.display()))?;
    let digests = customize::Digests::of(&tgz);
    println!(
        "{} {}: {} bytes\nsha256 {}\nmd5    {}",
        module.rawname, module.version, digests.size, digests.sha256, digests.md5
    );
    let key = pubkey
        .or(config.release.minisign_pubkey.as_deref())
        .context("no public key: --pubkey KEY or [release] minisign_pubkey")?;
    let minisig = signature::read_for(file, sig)?.with_context(|| {
        format!(
            "no signature: {} does not exist (--sig FILE)",
            signature::default_path(file).display()
        )
    })?;
    let trusted = signature::verify(&tgz, &minisig, &signature::public_key(key)?)?;
    println!("signature ok: {trusted}");
    Ok(())
}
