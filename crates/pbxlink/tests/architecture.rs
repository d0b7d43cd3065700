//! ARCHITECTURE.md's invariants, checked on the source tree: which workspace crate may use
//! which (the layers), which may depend on the crates that bring I/O (tokio, sqlx, HTTP),
//! that the sans-IO crates never read the clock, spawn, or touch sockets and files in their
//! production code, and that the process has one tokio runtime. A new dependency or a stray `Utc::now()` fails here, not in review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use expect_test::expect;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Each workspace crate and the workspace crates it may depend on: a crate only uses crates
/// below it, so no circle can form between them.
const LAYERS: &[(&str, &[&str])] = &[
    ("ami", &[]),
    ("agi", &[]),
    ("calls", &["ami"]),
    ("crm", &["calls"]),
    ("store", &["calls"]),
    ("sim", &["ami", "calls"]),
    ("pbx", &["ami", "calls"]),
    ("web", &["pbx", "store"]),
    ("release", &["pbx", "store", "web"]),
    ("delivery", &["calls", "crm", "store"]),
    (
        "pbxlink",
        &[
            "ami", "agi", "calls", "crm", "store", "sim", "pbx", "web", "release", "delivery",
        ],
    ),
];

/// The crates that do I/O or run tasks, and the workspace crates allowed to depend on them:
/// `store` is the database edge (sqlx needs tokio's runtime; its writers take turns on a
/// tokio mutex), `sim` is the fake Asterisk (its AMI servers, over TCP or TLS), `pbx` the
/// link to the real one (AMI over TCP/TLS, AJAM over HTTP, the CDR database), `web` the HTTP
/// servers' edge, `release` the module release server, `delivery` the CRMs' (HTTP out,
/// worker tasks; its `testing` feature serves the fake CRMs with axum); the binary wires them.
const IO_CRATES: &[(&str, &[&str])] = &[
    (
        "tokio",
        &[
            "store", "sim", "pbx", "web", "release", "delivery", "pbxlink",
        ],
    ),
    ("sqlx", &["store", "pbx", "pbxlink"]),
    ("reqwest", &["pbx", "release", "delivery", "pbxlink"]),
    ("axum", &["web", "release", "delivery", "pbxlink"]),
    ("hyper", &["web", "pbxlink"]),
    ("tokio-rustls", &["sim", "pbx", "web", "release", "pbxlink"]),
];

/// Crates whose production code takes bytes, events and `now` and never fetches them itself.
/// `store` is held to the clock rule too: every time it writes comes from its caller.
const NO_CLOCK: &[&str] = &["ami", "agi", "calls", "crm", "store"];
const SANS_IO: &[&str] = &["ami", "agi", "calls", "crm"];

/// What reading the clock looks like.
const CLOCK: &[&str] = &[
    "Utc::now(",
    "Local::now(",
    "SystemTime::now(",
    "Instant::now(",
];
/// What doing I/O or running tasks looks like.
const IO: &[&str] = &[
    "std::net::",
    "std::fs::",
    "File::open(",
    "File::create(",
    "thread::spawn(",
    "tokio::",
];

/// `[dependencies]` of a crate (not dev-dependencies: tests may do anything).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(WORKSPACE)
        .join("crates")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// The workspace's crates, from its manifest: a crate added without a layer fails the test.
fn members() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join("Cargo.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().trim_start_matches("crates/").to_owned())
        .collect()
}

/// What the workspace's crates depend on that their layer does not allow.
fn dependency_breaches() -> Vec<String> {
    let mut out = Vec::new();
    for krate in members() {
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == krate) else {
            out.push(format!("{krate}: a crate with no layer in this test"));
            continue;
        };
        for dep in dependencies(&krate) {
            let layered = LAYERS.iter().any(|(name, _)| *name == dep);
            if layered && !allowed.contains(&dep.as_str()) {
                out.push(format!("{krate} -> {dep}: against the layers"));
            }
            if let Some((_, may)) = IO_CRATES.iter().find(|(io, _)| *io == dep) {
                if !may.contains(&krate.as_str()) {
                    out.push(format!("{krate} -> {dep}: an I/O crate"));
                }
            }
        }
    }
    out
}

/// The production source files of a crate: `src/**/*.rs` but the `tests.rs` modules.
fn sources(krate: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(WORKSPACE).join("crates").join(krate).join("src"),
        &mut out,
    );
    out.sort();
    out
}

/// A file's production code: up to its inline `#[cfg(test)]` module (this codebase keeps
/// tests at the end of a file; a `#[cfg(test)] mod tests;` declaration is skipped, its file
/// is not read), without comments.
fn production_code(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.peek() {
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        out.push(line.split("//").next().unwrap_or_default());
    }
    out.join("\n")
}

/// Clock reads and I/O in the crates that must not have them: `file: what`.
fn code_breaches() -> Vec<String> {
    let mut out = Vec::new();
    for krate in NO_CLOCK {
        let rules: Vec<&str> = if SANS_IO.contains(krate) {
            CLOCK.iter().chain(IO).copied().collect()
        } else {
            CLOCK.to_vec()
        };
        for file in sources(krate) {
            let code = production_code(&std::fs::read_to_string(&file).unwrap());
            let name = file
                .strip_prefix(Path::new(WORKSPACE).join("crates"))
                .unwrap()
                .display()
                .to_string();
            for rule in &rules {
                if code.contains(rule) {
                    out.push(format!("{name}: {rule}"));
                }
            }
        }
    }
    out
}

/// Every source file of every crate says what it is in its first line.
fn files_without_a_module_line() -> Vec<String> {
    let mut out = Vec::new();
    for krate in members() {
        for file in sources(&krate) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                out.push(file.display().to_string());
            }
        }
    }
    out
}

#[test]
fn crates_depend_only_downwards_and_on_io_only_at_the_edges() {
    expect![[r#"[]"#]].assert_eq(&format!("{:?}", dependency_breaches()));
}

#[test]
fn sans_io_crates_never_read_the_clock_spawn_or_touch_sockets_and_files() {
    expect![[r#"[]"#]].assert_eq(&format!("{:?}", code_breaches()));
}

/// Where the process makes a tokio runtime: once, in `main` (the binary's crates with tokio
/// run on it).
fn runtimes() -> Vec<String> {
    ["sim", "pbx", "web", "release", "pbxlink"]
        .into_iter()
        .flat_map(sources)
        .filter(|file| {
            let code = production_code(&std::fs::read_to_string(file).unwrap());
            code.contains("Runtime::new(") || code.contains("runtime::Builder")
        })
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn one_tokio_runtime_made_in_main() {
    expect![[r#"["main.rs"]"#]].assert_eq(&format!("{:?}", runtimes()));
}

#[test]
fn every_source_file_starts_with_what_it_is() {
    expect![[r#"[]"#]].assert_eq(&format!("{:?}", files_without_a_module_line()));
}

/// The checks themselves: a violation of each kind is caught.
#[test]
fn the_checks_catch_what_they_guard() {
    let code = "//! x\n#[cfg(test)]\nmod helpers;\nfn f() { let t = Utc::now(); } // Instant::now() in a comment\n#[cfg(test)]\nmod tests { fn g() { std::fs::read(\"x\"); } }\n";
    let production = production_code(code);
    let found: BTreeMap<&str, bool> = CLOCK
        .iter()
        .chain(IO)
        .map(|rule| (*rule, production.contains(rule)))
        .filter(|(_, found)| *found)
        .collect();
    expect![[r#"{"Utc::now(": true}"#]].assert_eq(&format!("{found:?}"));
}
