//! The `agi_*` environment Asterisk sends at the start of every AGI session.

/// The session's environment, in the order Asterisk sent it.
///
/// Values are kept as text; bytes that are not UTF-8 (a caller name in a legacy code page)
/// are replaced with U+FFFD rather than rejecting the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// An environment from `(name, value)` pairs, names with their `agi_` prefix.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }

    pub(crate) fn push(&mut self, name: String, value: String) {
        self.vars.push((name, value));
    }

    pub(crate) fn len(&self) -> usize {
        self.vars.len()
    }

    /// The value of `name` (with its `agi_` prefix, e.g. `agi_callerid`); the first one if
    /// Asterisk sent it twice.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every variable, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `agi_network_script`: what follows `host:port/` in `agi://host:port/route?x=1`.
    pub fn network_script(&self) -> Option<&str> {
        self.get("agi_network_script")
    }

    /// The script path the server routes on: `agi_network_script` without its query and
    /// without leading slashes (`route?x=1` -> `route`). Empty when there is none.
    pub fn script_path(&self) -> &str {
        let script = self.network_script().unwrap_or_default();
        let path = script.split_once('?').map_or(script, |(path, _)| path);
        path.trim_start_matches('/')
    }

    /// The `key=value` pairs of the script's query string (`route?x=1` -> `[("x", "1")]`).
    pub fn script_params(&self) -> impl Iterator<Item = (&str, &str)> {
        let query = self
            .network_script()
            .and_then(|s| s.split_once('?'))
            .map_or("", |(_, q)| q);
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }

    /// The AGI() arguments, `agi_arg_1`, `agi_arg_2`, ... in order; stops at the first gap.
    pub fn args(&self) -> Vec<&str> {
        (1..)
            .map_while(|n| self.get(&format!("agi_arg_{n}")))
            .collect()
    }

    /// `agi_callerid`, with Asterisk's "unknown" (no caller ID) as `None`.
    pub fn caller_id(&self) -> Option<&str> {
        self.get("agi_callerid")
            .filter(|v| !v.is_empty() && *v != "unknown")
    }

    /// `agi_uniqueid`.
    pub fn unique_id(&self) -> Option<&str> {
        self.get("agi_uniqueid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(script: &str, expect: Expect) {
        let env = Environment::from_pairs([
            ("agi_network_script", script),
            ("agi_arg_1", "first arg"),
            ("agi_arg_2", ""),
            ("agi_arg_4", "after a gap"),
        ]);
        let params: Vec<_> = env.script_params().collect();
        expect.assert_eq(&format!(
            "path={:?} params={params:?} args={:?}",
            env.script_path(),
            env.args()
        ));
    }

    #[test]
    fn script_path_params_and_args() {
        check(
            "route?x=1",
            expect![[r#"path="route" params=[("x", "1")] args=["first arg", ""]"#]],
        );
        check(
            "/webhook/?a=1&b&&c=x=y",
            expect![[
                r#"path="webhook/" params=[("a", "1"), ("b", ""), ("c", "x=y")] args=["first arg", ""]"#
            ]],
        );
        check("", expect![[r#"path="" params=[] args=["first arg", ""]"#]]);
    }

    #[test]
    fn unknown_caller_id_is_none() {
        let env = |v| Environment::from_pairs([("agi_callerid", v)]);
        assert_eq!(env("15551234567").caller_id(), Some("15551234567"));
        assert_eq!(env("unknown").caller_id(), None);
        assert_eq!(env("").caller_id(), None);
    }
}
