//! Who a channel is: a phone (extension), a trunk, or one half of a Local channel pair:
//! from the [`TrackerConfig`], what the PBX says of its endpoints, and how they behave.

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
    /// Endpoint name -> extension, for phones nothing else identifies (overrides all).
    pub extensions: FxHashMap<String, String>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            trunks: Vec::new(),
            min_extension_len: 2,
            max_extension_len: 6,
            users: FxHashMap::default(),
            extensions: FxHashMap::default(),
        }
    }
}

impl TrackerConfig {
    /// True for a 2-6 digit number (by default): what FreePBX extensions look like.
    pub fn is_extension(&self, s: &str) -> bool {
        (self.min_extension_len..=self.max_extension_len).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// Classifies a channel by its name and the config alone (`PJSIP/201-0000000a`,
    /// `Local/201#@from-internal-00000000;1`); [`Directory::classify`] also knows what the
    /// PBX and the traffic said.
    pub fn classify(&self, channel: &str) -> Kind {
        match endpoint_of(channel) {
            Some(Endpoint::Sip(endpoint)) => match self.configured(endpoint) {
                Some(kind) => kind,
                None if self.is_extension(endpoint) => Kind::Phone(endpoint.to_owned()),
                None => Kind::Trunk,
            },
            Some(Endpoint::Dahdi) => Kind::Trunk,
            Some(Endpoint::Local(kind)) => kind,
            None => Kind::Other,
        }
    }

    /// What `[tracker]` says `endpoint` is, if anything.
    fn configured(&self, endpoint: &str) -> Option<Kind> {
        if let Some(ext) = self.extensions.get(endpoint) {
            Some(Kind::Phone(ext.clone()))
        } else if self.trunks.iter().any(|t| t == endpoint) {
            Some(Kind::Trunk)
        } else {
            None
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

/// What a channel name says before anything is learned.
enum Endpoint<'a> {
    /// A SIP or IAX2 endpoint (phone or trunk): `PJSIP/<endpoint>-0000000a`.
    Sip(&'a str),
    /// A DAHDI channel: a line to the outside.
    Dahdi,
    Local(Kind),
}

fn endpoint_of(channel: &str) -> Option<Endpoint<'_>> {
    let (tech, rest) = channel.split_once('/')?;
    if tech.eq_ignore_ascii_case("Local") {
        // Local/<exten>@<context>-<seq>;<half>; `201#` (ring group member) means 201.
        let (body, half) = match rest.rsplit_once(';') {
            Some((b, "1")) => (b, 1),
            Some((b, "2")) => (b, 2),
            _ => return None,
        };
        let exten = body.split_once('@').map_or(body, |(e, _)| e);
        let number = exten.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let number = number.strip_prefix('+').unwrap_or(number);
        return Some(Endpoint::Local(Kind::Local {
            number: number.to_owned(),
            half,
        }));
    }
    if ["PJSIP", "SIP", "IAX2"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tech))
    {
        Some(Endpoint::Sip(
            rest.rsplit_once('-').map_or(rest, |(e, _)| e),
        ))
    } else if tech.eq_ignore_ascii_case("DAHDI") {
        Some(Endpoint::Dahdi)
    } else {
        None
    }
}

/// Why an endpoint is taken for a phone or a trunk. The call story names it (but for the
/// plain cases: a phone named by its extension, a trunk nothing marks as a phone), so a wrong
/// guess is easy to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `[tracker] extensions` or `trunks` say so.
    Config,
    /// The PBX's endpoint configuration (`PJSIPShowEndpoint`, `SIPshowpeer`): its caller ID.
    PbxConfig,
    /// Its name is an extension (FreePBX's convention).
    Name,
    /// Its channel carries an extension as its own caller ID (a phone named by account).
    CallerId,
    /// It was dialed with a number (`15551234567@carrier`, `carrier/15551234567`).
    DialedWithNumber,
    /// It brought calls from different caller IDs: a line, not a phone.
    ManyCallerIds,
    /// Nothing marks it as a phone.
    NotAPhone,
}

impl Rule {
    /// The reason in words, for the call story; `None` for the plain cases.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Rule::Config => Some("the tracker config"),
            Rule::PbxConfig => Some("its caller ID in the PBX's configuration"),
            Rule::CallerId => Some("its channel's own caller ID"),
            Rule::DialedWithNumber => Some("it was dialed with a number"),
            Rule::ManyCallerIds => Some("it brought calls from several numbers"),
            Rule::Name | Rule::NotAPhone => None,
        }
    }
}

/// What the tracker has learned of the PBX's SIP/IAX2 endpoints: from the PBX's own
/// configuration (read at login) and from how each endpoint behaves in calls. A phone is an
/// endpoint that presents an extension as its caller ID or is named by one; a trunk is an
/// endpoint dialed with numbers, or one that brings calls from several numbers.
///
/// Precedence: the config, then the PBX's configuration and what the traffic proved (a
/// number dialed, several callers), then the name, then the caller ID seen.
#[derive(Debug, Default)]
pub struct Directory {
    endpoints: FxHashMap<Box<str>, Learned>,
}

#[derive(Debug, Clone)]
struct Learned {
    /// `None`: a trunk.
    extension: Option<Box<str>>,
    rule: Rule,
}

impl Learned {
    fn kind(&self) -> Kind {
        match &self.extension {
            Some(ext) => Kind::Phone(ext.to_string()),
            None => Kind::Trunk,
        }
    }
}

impl Directory {
    /// Classifies a new channel and learns from it. `caller_num` is the caller ID the
    /// channel was created with: a phone's own (the PBX sets it from the endpoint's
    /// configuration, or the phone sent it); `dialed` is true for a channel the PBX created to
    /// dial out (its caller ID is the endpoint's configured one, or unknown), false for a call
    /// coming in from the endpoint.
    pub fn classify(
        &mut self,
        config: &TrackerConfig,
        channel: &str,
        caller_num: Option<&str>,
        dialed: bool,
    ) -> (Kind, Rule) {
        let endpoint = match endpoint_of(channel) {
            Some(Endpoint::Sip(endpoint)) => endpoint,
            Some(Endpoint::Dahdi) => return (Kind::Trunk, Rule::NotAPhone),
            Some(Endpoint::Local(kind)) => return (kind, Rule::Name),
            None => return (Kind::Other, Rule::NotAPhone),
        };
        if let Some(kind) = config.configured(endpoint) {
            return (kind, Rule::Config);
        }
        let caller_ext = caller_num.filter(|n| config.is_extension(n));
        if let Some(learned) = self.endpoints.get_mut(endpoint) {
            match (learned.rule, &learned.extension, caller_num) {
                // A phone presents one caller ID; an endpoint that brings calls from
                // another number is a line. (A phone withholding its number, `anonymous`,
                // proves nothing.)
                (Rule::CallerId, Some(ext), Some(num))
                    if !dialed && **ext != *num && is_number(num) =>
                {
                    *learned = Learned {
                        extension: None,
                        rule: Rule::ManyCallerIds,
                    };
                }
                _ => {}
            }
            return (learned.kind(), learned.rule);
        }
        if config.is_extension(endpoint) {
            return (Kind::Phone(endpoint.to_owned()), Rule::Name);
        }
        match caller_ext {
            Some(ext) => {
                self.learn(endpoint, Some(ext), Rule::CallerId);
                (Kind::Phone(ext.to_owned()), Rule::CallerId)
            }
            None => (Kind::Trunk, Rule::NotAPhone),
        }
    }

    /// What `channel` is by what is known now, learning nothing (a channel listed after a
    /// gap, whose caller ID is no longer its own).
    pub fn known(&self, config: &TrackerConfig, channel: &str) -> Kind {
        match endpoint_of(channel) {
            Some(Endpoint::Sip(endpoint)) => config
                .configured(endpoint)
                .or_else(|| self.endpoints.get(endpoint).map(Learned::kind))
                .unwrap_or_else(|| config.classify(channel)),
            _ => config.classify(channel),
        }
    }

    /// `channel` was dialed with `dial` (a `DialBegin`'s `DialString`). A number in it
    /// (`15551234567@carrier`, `carrier/15551234567`) makes its endpoint a trunk, unless the
    /// config or the PBX says it is a phone. True when that changes what it is.
    pub fn dialed(&mut self, config: &TrackerConfig, channel: &str, dial: &str) -> bool {
        let Some(Endpoint::Sip(endpoint)) = endpoint_of(channel) else {
            return false;
        };
        if config.configured(endpoint).is_some() || number_in_dial(dial, endpoint).is_none() {
            return false;
        }
        match self.endpoints.get(endpoint) {
            Some(l) if l.extension.is_none() || l.rule == Rule::PbxConfig => false,
            _ => {
                self.learn(endpoint, None, Rule::DialedWithNumber);
                true
            }
        }
    }

    /// The PBX's configuration of `endpoint` (`PJSIPShowEndpoint`'s `Callerid`,
    /// `SIPshowpeer`'s `Callerid`: `"Alice" <201>`). An extension there makes it a phone;
    /// an outside number a trunk; no caller ID says nothing.
    pub fn configured(&mut self, config: &TrackerConfig, endpoint: &str, callerid: &str) {
        let number = callerid_number(callerid);
        if number.is_empty() || config.configured(endpoint).is_some() {
            return;
        }
        if number == endpoint && config.is_extension(endpoint) {
            // What the name says already: nothing to learn, nothing to note.
            self.endpoints.remove(endpoint);
        } else if config.is_extension(number) {
            self.learn(endpoint, Some(number), Rule::PbxConfig);
        } else {
            self.learn(endpoint, None, Rule::PbxConfig);
        }
    }

    /// `config` with what was learned added to its overrides, for whoever judges channel
    /// names alone (the CDR repair): learned phones as `extensions`, learned trunks as
    /// `trunks`. The config's own entries stay first.
    pub fn applied_to(&self, config: &TrackerConfig) -> TrackerConfig {
        let mut out = config.clone();
        for (endpoint, learned) in &self.endpoints {
            if config.configured(endpoint).is_some() {
                continue;
            }
            match &learned.extension {
                Some(ext) => {
                    out.extensions.insert(endpoint.to_string(), ext.to_string());
                }
                None => out.trunks.push(endpoint.to_string()),
            }
        }
        out
    }

    fn learn(&mut self, endpoint: &str, extension: Option<&str>, rule: Rule) {
        self.endpoints.insert(
            endpoint.into(),
            Learned {
                extension: extension.map(Into::into),
                rule,
            },
        );
    }
}

/// Digits, with an optional leading `+`.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The number of a caller ID as Asterisk prints it: `"Alice" <201>`, `<201>`, `201`.
fn callerid_number(callerid: &str) -> &str {
    let inner = match (callerid.rfind('<'), callerid.rfind('>')) {
        (Some(open), Some(close)) if open < close => &callerid[open + 1..close],
        _ => callerid,
    };
    inner.trim()
}

/// The number in a dial string for `endpoint`, if it was dialed with one: PJSIP's and
/// chan_sip's `number@endpoint`, chan_sip's and IAX2's `endpoint/number`. A contact URI
/// (`endpoint/sip:…`, FreePBX's way to dial a phone) or the endpoint alone is no number.
fn number_in_dial<'a>(dial: &'a str, endpoint: &str) -> Option<&'a str> {
    let number = match dial.split_once('@') {
        Some((user, host)) if host.split([':', '/']).next() == Some(endpoint) => user,
        _ => dial.strip_prefix(endpoint)?.strip_prefix('/')?,
    };
    (number != endpoint && is_number(number)).then(|| number.strip_prefix('+').unwrap_or(number))
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

    #[test]
    fn numbers_in_dial_strings_and_caller_ids() {
        for (dial, endpoint, number) in [
            ("15557654321@carrier", "carrier", Some("15557654321")),
            ("carrier/15557654321", "carrier", Some("15557654321")),
            ("+74951234567@city:5060", "city", Some("74951234567")),
            ("7001234501", "7001234501", None),
            ("202/sip:202@127.0.0.1:5070", "202", None),
            ("carrier/sip:15557654321@10.0.0.1", "carrier", None),
            ("s@carrier", "carrier", None),
        ] {
            assert_eq!(number_in_dial(dial, endpoint), number, "{dial}");
        }
        assert_eq!(callerid_number("\"Alice\" <201>"), "201");
        assert_eq!(callerid_number("<201>"), "201");
        assert_eq!(callerid_number("201"), "201");
        assert_eq!(callerid_number("\"\" <>"), "");
    }

    /// What the traffic taught reaches whoever judges names alone (the CDR repair).
    #[test]
    fn learned_endpoints_become_overrides() {
        let config = TrackerConfig::default();
        let mut directory = Directory::default();
        directory.classify(&config, "SIP/7001234501-00000001", Some("201"), false);
        directory.classify(&config, "PJSIP/5000-00000002", None, true);
        directory.dialed(&config, "PJSIP/5000-00000002", "15551234567@5000");
        let names = directory.applied_to(&config);
        assert_eq!(
            names.classify("SIP/7001234501-0000000a"),
            Kind::Phone("201".into())
        );
        assert_eq!(names.classify("PJSIP/5000-0000000b"), Kind::Trunk);
        assert_eq!(
            config.classify("PJSIP/5000-0000000b"),
            Kind::Phone("5000".into())
        );
    }
}
