//! Module version order as FreePBX sees it: PHP's `version_compare`, which FreePBX's module
//! admin uses to decide whether an offered version is an upgrade.

use std::cmp::Ordering;

/// One part of a canonical PHP version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Number(u64),
    Word(&'a str),
}

/// Splits like PHP's `php_canonicalize_version`: `-`, `_`, `+` and `.` separate parts, and a
/// change between digits and other characters starts a new part (`1.0rc1` = `1 0 rc 1`).
fn parts(version: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    for chunk in version
        .split(['.', '-', '_', '+'])
        .filter(|c| !c.is_empty())
    {
        let mut rest = chunk;
        while let Some(first) = rest.chars().next() {
            let digits = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (part, tail) = rest.split_at(end);
            out.push(match part.parse() {
                Ok(n) if digits => Part::Number(n),
                // A number too long for u64 still sorts above every word, like PHP's.
                _ if digits => Part::Number(u64::MAX),
                _ => Part::Word(part),
            });
            rest = tail;
        }
    }
    out
}

/// PHP's rank of the special words; a number ranks as `#`, unknown words lowest.
fn rank(part: Part<'_>) -> i8 {
    match part {
        Part::Number(_) => 4,
        Part::Word("dev") => 0,
        Part::Word("alpha" | "a") => 1,
        Part::Word("beta" | "b") => 2,
        Part::Word("RC" | "rc") => 3,
        Part::Word("#") => 4,
        Part::Word("pl" | "p") => 5,
        Part::Word(_) => -6,
    }
}

/// `version_compare(a, b)` as an [`Ordering`].
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x, y) {
            (Part::Number(x), Part::Number(y)) => x.cmp(y),
            _ => rank(*x).cmp(&rank(*y)),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    // PHP compares the longer version's next part with `#`: `1.0.1 > 1.0` but `1.0rc1 < 1.0`.
    match a.len().cmp(&b.len()) {
        Ordering::Equal => Ordering::Equal,
        Ordering::Greater => rank(a[b.len()])
            .cmp(&rank(Part::Word("#")))
            .then(Ordering::Greater),
        Ordering::Less => rank(Part::Word("#"))
            .cmp(&rank(b[a.len()]))
            .then(Ordering::Less),
    }
}

/// Whether `version` is a version string a module may carry: PHP-comparable parts only,
/// nothing that could act as a path or a URL piece.
pub fn is_valid(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    fn check(pairs: &[(&str, &str)], expected: Expect) {
        let lines: Vec<String> = pairs
            .iter()
            .map(|(a, b)| {
                let sign = match super::compare(a, b) {
                    std::cmp::Ordering::Less => "<",
                    std::cmp::Ordering::Equal => "=",
                    std::cmp::Ordering::Greater => ">",
                };
                format!("{a} {sign} {b}")
            })
            .collect();
        expected.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn orders_like_php_version_compare() {
        // Each line checked against `php -r 'echo version_compare(A, B);'` semantics.
        check(
            &[
                ("16.0.3", "16.0.3"),
                ("16.0.10", "16.0.9"),
                ("16.0.3.1", "16.0.3"),
                ("16.0", "16.0.0"),
                ("1.0rc1", "1.0"),
                ("1.0.0-beta", "1.0.0-RC1"),
                ("1.0pl1", "1.0"),
                ("2.0-dev", "2.0-alpha"),
                ("17.0.1", "16.99.99"),
                ("1.0-foo", "1.0-dev"),
            ],
            expect![[r#"
                16.0.3 = 16.0.3
                16.0.10 > 16.0.9
                16.0.3.1 > 16.0.3
                16.0 < 16.0.0
                1.0rc1 < 1.0
                1.0.0-beta < 1.0.0-RC1
                1.0pl1 > 1.0
                2.0-dev < 2.0-alpha
                17.0.1 > 16.99.99
                1.0-foo < 1.0-dev"#]],
        );
    }

    #[test]
    fn refuses_versions_that_could_be_paths() {
        let verdicts: Vec<_> = ["16.0.3", "1.0rc1", "../1", "1/2", "", "1.0 beta", "v1"]
            .iter()
            .map(|v| format!("{v:?}: {}", super::is_valid(v)))
            .collect();
        expect![[r#"
            "16.0.3": true
            "1.0rc1": true
            "../1": false
            "1/2": false
            "": false
            "1.0 beta": false
            "v1": false"#]]
        .assert_eq(&verdicts.join("\n"));
    }
}
