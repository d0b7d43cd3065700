//! `pbxlink init` (a commented config with safe defaults) and `pbxlink check-config` (every
//! problem of a config file, each with file:line:col and the line itself).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{line_column, offset_of, Config, ConfigError, Problem, Seg};

/// The file `pbxlink init` writes: every section, commented, secrets as env-var references.
pub const TEMPLATE: &str = include_str!("config_template.toml");

/// Where `init` and `check-config` look when given no path.
pub const DEFAULT_PATH: &str = "pbxlink.toml";

/// `pbxlink init [PATH] [--force]`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the config.
    #[arg(default_value = DEFAULT_PATH)]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the template; an existing file is kept unless `force`.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&args.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} exists; keep it, or overwrite it with --force",
            args.path.display()
        ),
        _ => anyhow::anyhow!("cannot write {}: {e}", args.path.display()),
    })?;
    file.write_all(TEMPLATE.as_bytes())?;
    eprintln!(
        "wrote {}; edit it, then `pbxlink --config {} check-config`",
        args.path.display(),
        args.path.display()
    );
    Ok(())
}

/// `pbxlink check-config`: prints what is wrong (or the effective settings); `Ok(false)` when
/// something is.
pub fn check_config(path: &Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file = path.display().to_string();
    let report = check(&text, &file, |var| std::env::var(var).ok());
    match report {
        Ok(summary) => {
            println!("{file}: OK");
            print!("{summary}");
            Ok(true)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(false)
        }
    }
}

/// Checks config text: the effective settings when all is well, else one located message
/// per problem. `env` reads environment variables (a parameter for tests).
pub fn check(
    text: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let config: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            return Err(render(text, file, offset, e.message()));
        }
    };
    let mut problems = config.problems();
    problems.extend(environment_problems(&config, &env));
    if problems.is_empty() {
        return Ok(config.summary());
    }
    let mut out = String::new();
    for p in &problems {
        out.push_str(&render(text, file, offset_of(text, &p.at), &p.message));
    }
    let _ = writeln!(out, "{file}: {} problem(s)", problems.len());
    Err(out)
}

/// What only the running system can tell: unset environment secrets, unreadable TLS files,
/// connectors that cannot be built, names used twice.
fn environment_problems(config: &Config, env: &impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Err(message) = store_url_problem(&config.database_url()) {
        out.push(Problem::at(&["database", "url"], message));
    }
    for (i, pbx) in config.pbx.iter().enumerate() {
        let at = |key: &str| vec![Seg::key("pbx"), Seg::Index(i), Seg::key(key)];
        if let Err(e) = pbx.resolve_secret(env) {
            let key = if pbx.secret_env.is_some() {
                "secret_env"
            } else {
                "name"
            };
            out.push(Problem {
                at: at(key),
                message: e.to_string(),
            });
        }
        if let Some(cdr) = &pbx.cdr {
            let at = |key: &str| {
                vec![
                    Seg::key("pbx"),
                    Seg::Index(i),
                    Seg::key("cdr"),
                    Seg::key(key),
                ]
            };
            let problem = match cdr.kind {
                pbx::cdr::CdrKind::Mysql => cdr.resolve_url(env).err().map(|e| (at("url_env"), e)),
                pbx::cdr::CdrKind::Csv => cdr.path.as_ref().and_then(|path| {
                    match std::fs::File::open(path) {
                        Ok(_) => None,
                        // Asterisk creates Master.csv with its first row: a new PBX has
                        // none yet, and its directory is enough.
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                && path.parent().is_some_and(std::path::Path::is_dir) =>
                        {
                            None
                        }
                        Err(e) => {
                            Some((at("path"), format!("cannot read {}: {e}", path.display())))
                        }
                    }
                }),
            };
            if let Some((at, message)) = problem {
                out.push(Problem {
                    at,
                    message: format!("pbx '{}': [pbx.cdr] {message}", pbx.name),
                });
            }
        }
        if pbx.tls {
            if let Err(e) = pbx::ami_client::tls_config(pbx) {
                out.push(Problem {
                    at: at("tls_ca_file"),
                    message: e.to_string(),
                });
            }
        }
    }
    for (i, crm) in config.crm.iter().enumerate() {
        let at = vec![Seg::key("crm"), Seg::Index(i)];
        if config.crm[..i].iter().any(|c| c.name() == crm.name()) {
            let message = format!("two [[crm]] are named '{}'", crm.name());
            out.push(Problem {
                at: at.clone(),
                message,
            });
        }
        if let Err(e) = delivery::outbox::Crm::from_config(crm) {
            out.push(Problem {
                at,
                message: format!("{e:#}"),
            });
        }
    }
    let release = &config.release;
    for (section, cert, key) in [
        ("http", &config.http.tls_cert, &config.http.tls_key),
        ("release", &release.tls_cert, &release.tls_key),
    ] {
        if let (Some(cert), Some(key)) = (cert, key) {
            let identity = web::http_server::Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            if let Err(e) = web::http_server::tls_acceptor(&identity) {
                out.push(Problem::at(
                    &[section, "tls_cert"],
                    format!("[{section}] {e:#}"),
                ));
            }
        }
    }
    if let Some(var) = config.recordings.as_ref().and_then(|r| r.key_env.as_ref()) {
        match env(var) {
            None => out.push(Problem::at(
                &["recordings", "key_env"],
                format!("[recordings] environment variable {var} (key_env) is not set"),
            )),
            Some(key) if key.len() < 16 => out.push(Problem::at(
                &["recordings", "key_env"],
                format!("[recordings] ${var}: the key needs at least 16 characters"),
            )),
            Some(_) => {}
        }
    }
    for (keys, url) in [
        (["release", "public_url"], &release.public_url),
        (["freepbx", "update_url"], &config.freepbx.update_url),
    ] {
        if let Some(Err(e)) = url.as_deref().map(url::Url::parse) {
            out.push(Problem::at(
                &keys,
                format!("[{}] {}: {e}", keys[0], keys[1]),
            ));
        }
    }
    out
}

/// Why the store could not use `url`, before trying to connect.
fn store_url_problem(url: &str) -> Result<(), String> {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => Ok(()),
        "postgres" | "postgresql" => url::Url::parse(url)
            .map(drop)
            .map_err(|e| format!("[database] url: {e}")),
        _ => Err(format!(
            "[database] url {url:?}: expected sqlite://... or postgres://..."
        )),
    }
}

/// `file:line:col: message`, then the line itself with a caret under the column.
fn render(text: &str, file: &str, offset: usize, message: &str) -> String {
    let (line, column) = line_column(text, offset);
    let source = text.lines().nth(line - 1).unwrap_or_default();
    format!(
        "{file}:{line}:{column}: {message}\n{line:>5} | {source}\n      | {:>column$}\n",
        "^"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check_with(text: &str, expect: Expect) {
        let env = |var: &str| (var == "PBXLINK_AMI_SECRET").then(|| "s3cret".to_owned());
        let out = match check(text, "pbxlink.toml", env) {
            Ok(summary) => format!("OK\n{summary}"),
            Err(errors) => errors,
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn the_init_template_passes() {
        check_with(
            TEMPLATE,
            expect![[r#"
                OK
                data_dir: /var/lib/pbxlink
                database: sqlite:///var/lib/pbxlink/pbxlink.db?mode=rwc
                pbx office: 127.0.0.1:5038 user pbxlink auth Md5 events "on" secret MISSING (pbx 'office': environment variable PBXLINK_AMI_SECRET (secret_env) is not set), ping every 20s, reconnect 500ms..30s, queue 4096 (Block)
            "#]],
        );
    }

    #[test]
    fn cdr_section_problems_with_their_line() {
        check_with(
            r#"
[[pbx]]
name = "office"
secret = "x"
[pbx.cdr]
kind = "mysql"
url_env = "NOT_SET_ANYWHERE"
timezone = "MSK"
[[pbx]]
name = "branch"
secret = "x"
[pbx.cdr]
kind = "csv"
path = "/nonexistent/Master.csv"
columns = ["start", "linkedid"]
"#,
            expect![[r#"
                pbxlink.toml:8:12: pbx 'office': [pbx.cdr] timezone 'MSK': expected utc, local or an offset like +03:00
                    8 | timezone = "MSK"
                      |            ^
                pbxlink.toml:15:11: pbx 'branch': [pbx.cdr] columns lack 'channel'
                   15 | columns = ["start", "linkedid"]
                      |           ^
                pbxlink.toml:7:11: pbx 'office': [pbx.cdr] environment variable NOT_SET_ANYWHERE (url_env) is not set
                    7 | url_env = "NOT_SET_ANYWHERE"
                      |           ^
                pbxlink.toml:14:8: pbx 'branch': [pbx.cdr] cannot read /nonexistent/Master.csv: No such file or directory (os error 2)
                   14 | path = "/nonexistent/Master.csv"
                      |        ^
                pbxlink.toml: 4 problem(s)
            "#]],
        );
    }

    #[test]
    fn tracker_section_problems_with_their_line() {
        check_with(
            r#"
[[pbx]]
name = "office"
secret = "x"
[pbx.tracker]
extension_digits = [4, 3]
extensions = { "0004f2a1b2c3" = "alice" }
"#,
            expect![[r#"
                pbxlink.toml:6:20: pbx 'office': [pbx.tracker] extension_digits [4, 3]: need 1 <= fewest <= most
                    6 | extension_digits = [4, 3]
                      |                    ^
                pbxlink.toml:7:14: pbx 'office': [pbx.tracker] extensions: 'alice' (for 0004f2a1b2c3) is not an extension: 4 to 3 digits
                    7 | extensions = { "0004f2a1b2c3" = "alice" }
                      |              ^
                pbxlink.toml: 2 problem(s)
            "#]],
        );
    }

    #[test]
    fn every_problem_with_its_line() {
        check_with(
            r#"
[database]
url = "mysql://db/pbxlink"
[[pbx]]
name = "a"
secret_env = "NOT_SET_ANYWHERE"
[[pbx]]
name = "a"
tls = true
tls_ca_file = "/nonexistent/ca.pem"
reconnect_min = 9
[[crm]]
kind = "webhook"
name = "erp"
url = "not a url"
[freepbx]
update_url = "releases.example.com"
"#,
            expect![[r#"
                pbxlink.toml:8:8: two [[pbx]] are named 'a'
                    8 | name = "a"
                      |        ^
                pbxlink.toml:3:7: [database] url "mysql://db/pbxlink": expected sqlite://... or postgres://...
                    3 | url = "mysql://db/pbxlink"
                      |       ^
                pbxlink.toml:6:14: pbx 'a': environment variable NOT_SET_ANYWHERE (secret_env) is not set
                    6 | secret_env = "NOT_SET_ANYWHERE"
                      |              ^
                pbxlink.toml:10:15: pbx 'a': TLS CA file /nonexistent/ca.pem: No such file or directory (os error 2)
                   10 | tls_ca_file = "/nonexistent/ca.pem"
                      |               ^
                pbxlink.toml:17:14: [freepbx] update_url: relative URL without a base
                   17 | update_url = "releases.example.com"
                      |              ^
                pbxlink.toml: 5 problem(s)
            "#]],
        );
    }

    #[test]
    fn what_run_would_refuse_is_found_before() {
        check_with(
            r#"
[http]
tls_cert = "/nonexistent/cert.pem"
tls_key = "/nonexistent/key.pem"
[recordings]
dir = "/var/spool/asterisk/monitor"
bitrate = 33
key_env = "NOT_SET_ANYWHERE"
[outbox]
lease = 0
batch = 0
[agi]
lookup = "nobody"
"#,
            expect![[r#"
                pbxlink.toml:13:10: [agi] lookup: no [[crm]] is named 'nobody'
                   13 | lookup = "nobody"
                      |          ^
                pbxlink.toml:5:1: [recordings] bitrate 33 is not an MP3 bitrate (one of [8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320])
                    5 | [recordings]
                      | ^
                pbxlink.toml:10:9: [outbox] lease must be a positive number of seconds
                   10 | lease = 0
                      |         ^
                pbxlink.toml:11:9: [outbox] batch must be at least 1
                   11 | batch = 0
                      |         ^
                pbxlink.toml:3:12: [http] reading /nonexistent/cert.pem: No such file or directory (os error 2)
                    3 | tls_cert = "/nonexistent/cert.pem"
                      |            ^
                pbxlink.toml:8:11: [recordings] environment variable NOT_SET_ANYWHERE (key_env) is not set
                    8 | key_env = "NOT_SET_ANYWHERE"
                      |           ^
                pbxlink.toml: 6 problem(s)
            "#]],
        );
    }

    #[test]
    fn syntax_and_type_errors_point_at_the_value() {
        check_with(
            "[[pbx]]\nport = \"5038\"\n",
            expect![[r#"
                pbxlink.toml:2:8: invalid type: string "5038", expected u16
                    2 | port = "5038"
                      |        ^
            "#]],
        );
        check_with(
            "[http]\nallow = [\"10.0.0.0/33\"]\n",
            expect![[r#"
            pbxlink.toml:2:10: invalid IP address syntax
                2 | allow = ["10.0.0.0/33"]
                  |          ^
        "#]],
        );
    }
}
