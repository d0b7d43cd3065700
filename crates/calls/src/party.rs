//! Who a channel is: a phone (extension), a trunk, or one half of a Local channel pair,
//! read from the channel name and the [`TrackerConfig`] alone.

use rustc_hash::FxHashMap;

/// How the tracker tells phones from trunks. The defaults fit FreePBX.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Endpoint names that are trunks even when they look like extensions (e.g. a trunk
    /// named `5000`). Any endpoint whose name is not extension-shaped is a trunk anyway.
    pub trunks: Vec<String>,
    /// Shortest extension number (digits).
    pub min_extension_len: usize,
    /// Longest extension number (digits).
    pub max_extension_len: usize,
    /// Optional extension -> user name, used in the human timeline.
    pub users: FxHashMap<String, String>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            trunks: Vec::new(),
            min_extension_len: 2,
            max_extension_len: 6,
            users: FxHashMap::default(),
        }
    }
}

impl TrackerConfig {
    /// True for a 2-6 digit number (by default): what FreePBX extensions look like.
    pub fn is_extension(&self, s: &str) -> bool {
        (self.min_extension_len..=self.max_extension_len).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// Classifies a channel by its name (`PJSIP/201-0000000a`, `Local/201#@from-internal-00000000;1`).
    pub fn classify(&self, channel: &str) -> Kind {
        let Some((tech, rest)) = channel.split_once('/') else {
            return Kind::Other;
        };
        if tech.eq_ignore_ascii_case("Local") {
            // Local/<exten>@<context>-<seq>;<half>; `201#` (ring group member) means 201.
            let (body, half) = match rest.rsplit_once(';') {
                Some((b, "1")) => (b, 1),
                Some((b, "2")) => (b, 2),
                _ => return Kind::Other,
            };
            let exten = body.split_once('@').map_or(body, |(e, _)| e);
            let number = exten.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            let number = number.strip_prefix('+').unwrap_or(number);
            return Kind::Local {
                number: number.to_owned(),
                half,
            };
        }
        let endpoint = rest.rsplit_once('-').map_or(rest, |(e, _)| e);
        let phone_tech = ["PJSIP", "SIP", "IAX2"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tech));
        if phone_tech && self.is_extension(endpoint) && !self.trunks.iter().any(|t| t == endpoint) {
            Kind::Phone(endpoint.to_owned())
        } else if phone_tech || tech.eq_ignore_ascii_case("DAHDI") {
            Kind::Trunk
        } else {
            Kind::Other
        }
    }

    /// "201 (Alice)" when the user map knows the extension, else the number.
    pub(crate) fn describe(&self, party: &str) -> String {
        match self.users.get(party) {
            Some(name) => format!("{party} ({name})"),
            None => party.to_owned(),
        }
    }
}

/// What a channel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A phone registered as an extension.
    Phone(String),
    /// A trunk leg (external party).
    Trunk,
    /// One half of a Local channel pair; `number` is the dialed exten (`201`, `15557654321`).
    Local {
        /// The exten of the Local channel, without `#` and `+`.
        number: String,
        /// 1 (the caller-facing half) or 2 (the half that runs the dialplan).
        half: u8,
    },
    /// Anything else (conference, surrogate, unknown technology).
    Other,
}

/// The other half of a Local channel pair (`...;1` <-> `...;2`).
pub fn local_partner(channel: &str) -> Option<String> {
    let (body, half) = channel.rsplit_once(';')?;
    let other = match half {
        "1" => "2",
        "2" => "1",
        _ => return None,
    };
    Some(format!("{body};{other}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(channel: &str, expect: Expect) {
        expect.assert_eq(&format!("{:?}", TrackerConfig::default().classify(channel)));
    }

    #[test]
    fn channel_kinds() {
        check("PJSIP/201-0000000a", expect![[r#"Phone("201")"#]]);
        check("PJSIP/carrier-00000012", expect!["Trunk"]);
        check("SIP/15550001000-00000001", expect!["Trunk"]);
        check(
            "Local/201#@from-internal-00000003;2",
            expect![[r#"Local { number: "201", half: 2 }"#]],
        );
        check(
            "Local/+15557654321@pstn-out-00000001;1",
            expect![[r#"Local { number: "15557654321", half: 1 }"#]],
        );
        check("ConfBridge/0x7f", expect!["Other"]);
    }

    #[test]
    fn configured_trunk_wins_over_extension_shape() {
        let cfg = TrackerConfig {
            trunks: vec!["5000".into()],
            ..TrackerConfig::default()
        };
        assert_eq!(cfg.classify("PJSIP/5000-00000001"), Kind::Trunk);
        assert_eq!(
            local_partner("Local/201@agents-00000001;1").as_deref(),
            Some("Local/201@agents-00000001;2")
        );
    }
}
