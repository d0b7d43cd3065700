//! FreePBX integration: `pbxlink freepbx generate` (dialplan hooks and AMI user written into
//! the PBX's config, or checked against it) and `pbxlink freepbx package` (the same as a
//! FreePBX module tarball that installs through Module Admin and updates from
//! `pbxlink release-server`).

mod dialplan;
mod generate;
mod package;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::Settings;
pub use generate::Target;

/// `pbxlink freepbx ...`.
#[derive(Debug, Args)]
pub struct FreepbxArgs {
    #[command(subcommand)]
    command: FreepbxCommand,
}

#[derive(Debug, Subcommand)]
enum FreepbxCommand {
    /// Write (or with --check, verify) the dialplan hooks and the AMI user in the PBX's config.
    Generate {
        #[arg(long, value_enum, default_value = "freepbx")]
        target: Target,
        /// The Asterisk config directory.
        #[arg(long, default_value = "/etc/asterisk")]
        dir: PathBuf,
        /// Change nothing; fail if the installed files differ from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Build the FreePBX module tarball `<rawname>-<version>.tgz`.
    Package {
        /// The module version (what the release server will offer).
        #[arg(long)]
        version: String,
        /// Release server base URL for `<updateurl>` (`https://host` or
        /// `https://host/c/TOKEN`); default: `[freepbx] update_url`.
        #[arg(long)]
        update_url: Option<String>,
        /// Package for this release-server customer: the update URL becomes
        /// `<base>/c/<token>` (base: --update-url, `[freepbx] update_url` or `[release]
        /// public_url`), and the file `<rawname>-<version>-<customer>.tgz`.
        #[arg(long, requires = "customer_token")]
        customer: Option<String>,
        /// The customer's token, as `release customer add` printed it; checked against the
        /// release database.
        #[arg(long, env = "PBXLINK_CUSTOMER_TOKEN", hide_env_values = true)]
        customer_token: Option<String>,
        /// Where to write the tarball.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// The first line of pbxlink's block in a config file; everything up to [`END`] is replaced
/// on each run and nothing else in the file is touched.
const BEGIN: &str = "; BEGIN pbxlink (edits between BEGIN and END are lost on the next generate)";
const END: &str = "; END pbxlink";

fn with_markers(block: &str) -> String {
    format!("{BEGIN}\n{block}{END}\n")
}

/// pbxlink's block in `text`, markers included.
fn find_block(text: &str) -> Option<std::ops::Range<usize>> {
    let begin = text.find("; BEGIN pbxlink")?;
    let end = begin + text[begin..].find(END)?;
    let end = text[end..].find('\n').map_or(text.len(), |n| end + n + 1);
    Some(begin..end)
}

/// `text` with pbxlink's block replaced by `block` (appended when there is none).
fn merge(text: &str, block: &str) -> String {
    match find_block(text) {
        Some(range) => format!("{}{block}{}", &text[..range.start], &text[range.end..]),
        None if text.trim().is_empty() => block.to_owned(),
        None => format!("{}\n\n{block}", text.trim_end()),
    }
}

fn settings(config: &Settings, target: Target, secret: String) -> generate::Settings {
    let f = &config.freepbx;
    generate::Settings {
        target,
        gateway_ip: f.gateway_ip,
        agi_url: f.agi_url.clone(),
        ami_user: f.ami_user.clone(),
        ami_secret: secret,
        recordings_dir: f.recordings_dir.clone(),
    }
}

/// `pbxlink freepbx ...`.
pub async fn run(config: Settings, args: FreepbxArgs) -> anyhow::Result<()> {
    match args.command {
        FreepbxCommand::Generate { target, dir, check } => {
            // The same secret pbxlink logs in with (the first [[pbx]], or PBXLINK_AMI_SECRET).
            let secret = config.pbx.secret_from_env()?.expose().to_owned();
            let files = generate::files(&settings(&config, target, secret))?;
            if check {
                check_installed(&dir, &files)
            } else {
                write_files(&dir, &files)
            }
        }
        FreepbxCommand::Package {
            version,
            update_url,
            customer,
            customer_token,
            out,
        } => {
            let update_url = update_url.or_else(|| config.freepbx.update_url.clone());
            let (update_url, suffix) = match (customer, customer_token) {
                (Some(name), Some(token)) => {
                    let base = update_url
                        .or_else(|| config.release.public_url.clone())
                        .context(
                            "--customer needs the release server's address: --update-url, \
                             [freepbx] update_url or [release] public_url",
                        )?;
                    let url = crate::customer_update_url(&config, &name, &token, &base).await?;
                    (Some(url), format!("-{name}"))
                }
                _ => (update_url, String::new()),
            };
            // The AMI secret is made by install.php on the PBX: a published tarball holds none.
            let files = generate::files(&settings(
                &config,
                Target::Freepbx,
                package::SECRET_PLACEHOLDER.to_owned(),
            ))?;
            let module = package::Module {
                rawname: config.freepbx.rawname.clone(),
                version,
                update_url,
            };
            let tgz = package::build(&module, &files)?;
            std::fs::create_dir_all(&out)?;
            let path = out.join(format!("{}-{}{suffix}.tgz", module.rawname, module.version));
            std::fs::write(&path, tgz).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

fn write_files(dir: &Path, files: &[generate::File]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(file.name);
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        std::fs::write(&path, merge(&existing, &with_markers(&file.block)))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn check_installed(dir: &Path, files: &[generate::File]) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for file in files {
        let path = dir.join(file.name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let verdict = match find_block(&text) {
            None => "missing: no pbxlink block",
            Some(range) if text[range.clone()] == with_markers(&file.block) => "ok",
            Some(_) => "differs from what pbxlink would generate",
        };
        println!("{}: {verdict}", path.display());
        if verdict != "ok" {
            stale.push(file.name);
        }
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "{} out of date; run `pbxlink freepbx generate` (then `fwconsole reload`)",
            stale.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check_merge(existing: &str, expected: Expect) {
        expected.assert_eq(&merge(existing, &with_markers("[pbxlink]\n")));
    }

    #[test]
    fn merge_keeps_the_integrators_lines() {
        check_merge(
            "",
            expect![[r#"
                ; BEGIN pbxlink (edits between BEGIN and END are lost on the next generate)
                [pbxlink]
                ; END pbxlink
            "#]],
        );
        check_merge(
            "[mine]\nexten => 1,1,NoOp()\n",
            expect![[r#"
                [mine]
                exten => 1,1,NoOp()

                ; BEGIN pbxlink (edits between BEGIN and END are lost on the next generate)
                [pbxlink]
                ; END pbxlink
            "#]],
        );
        check_merge(
            "[a]\n; BEGIN pbxlink old\n[old]\n; END pbxlink\n[b]\n",
            expect![[r#"
                [a]
                ; BEGIN pbxlink (edits between BEGIN and END are lost on the next generate)
                [pbxlink]
                ; END pbxlink
                [b]
            "#]],
        );
    }
}
