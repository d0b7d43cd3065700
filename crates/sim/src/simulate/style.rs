//! How the simulated PBX names things: its channel technology, its phones' and trunk's
//! endpoints, its contexts and its dial strings. FreePBX (PJSIP endpoints named by
//! extension) or a bare Asterisk (chan_sip peers named by account, a dialplan of its own).

/// The dialplan and endpoint conventions of one kind of PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// The `--style` name.
    pub name: &'static str,
    /// Channel technology of phones and trunk (`PJSIP`, `SIP`).
    pub tech: &'static str,
    /// The trunk's endpoint (`carrier`, `city`).
    pub trunk: &'static str,
    /// FreePBX's dialplan: its macros and subroutines (macro-dial-one, sub-record-check,
    /// func-apply-sipheaders), its variables and its Local channels for ring groups. A bare
    /// dialplan does the same calls with plain Dial(), Queue() and MixMonitor().
    pub freepbx: bool,
    /// Phones' own context (where their calls start).
    pub internal: &'static str,
    /// Where calls from the trunk arrive.
    pub inbound: &'static str,
    /// Where an inbound call to one extension rings it.
    pub direct: &'static str,
    /// The outbound route (bare: phones dial `outbound_prefix` + number into it).
    pub outbound: &'static str,
    /// What phones dial before an outside number (stripped before the trunk).
    pub outbound_prefix: &'static str,
    pub ring_groups: &'static str,
    pub queues: &'static str,
    /// Where queue members' Local channels run (`Local/201@<here>/n`).
    pub queue_members: &'static str,
    pub ivr: &'static str,
    pub conference: &'static str,
    /// Where a phone's `*8` (pick up a ringing call) runs.
    pub pickup: &'static str,
    /// The context of the phones' hints (ExtensionStatus).
    pub hints: &'static str,
    /// Asterisk's version (CoreSettings, `core show version`): chan_sip is gone since 21.
    pub asterisk_version: &'static str,
    /// Its AMI version (the banner, CoreSettings).
    pub ami_version: &'static str,
}

impl Style {
    pub const FREEPBX: Style = Style {
        name: "freepbx",
        tech: "PJSIP",
        trunk: "carrier",
        freepbx: true,
        internal: "from-internal",
        inbound: "from-pstn",
        direct: "from-did-direct",
        outbound: "from-internal",
        outbound_prefix: "",
        ring_groups: "ext-group",
        queues: "ext-queues",
        queue_members: "from-queue",
        ivr: "ivr-1",
        conference: "ext-meetme",
        pickup: "app-pickup",
        hints: "ext-local",
        asterisk_version: "22.10.1",
        ami_version: "11.0.0",
    };

    pub const BARE: Style = Style {
        name: "bare",
        tech: "SIP",
        trunk: "city",
        freepbx: false,
        internal: "office",
        inbound: "city-in",
        direct: "office",
        outbound: "out-city",
        outbound_prefix: "9",
        ring_groups: "groups",
        queues: "queues",
        queue_members: "agents",
        ivr: "menu",
        conference: "conference",
        pickup: "office",
        hints: "office",
        asterisk_version: "18.26.4",
        ami_version: "7.0.3",
    };

    /// The first line Asterisk sends on an AMI connection.
    pub fn banner(&self) -> String {
        format!("Asterisk Call Manager/{}\r\n", self.ami_version)
    }

    /// Parses a `--style` name.
    pub fn from_name(name: &str) -> Option<Style> {
        [Style::FREEPBX, Style::BARE]
            .into_iter()
            .find(|s| s.name == name)
    }

    /// The endpoint of extension `ext`: FreePBX names it by the extension; a bare PBX by an
    /// account number (`7001234201`), or for some phones by their MAC address.
    pub fn endpoint(&self, ext: &str) -> String {
        match (self.freepbx, ext.ends_with('5')) {
            (true, _) => ext.to_owned(),
            (false, false) => format!("{ACCOUNT_PREFIX}{ext}"),
            (false, true) => format!("{MAC_PREFIX}{ext:0>6}"),
        }
    }

    /// The extension of a phone endpoint (the inverse of [`Self::endpoint`]), not the trunk's.
    pub fn extension_of<'a>(&self, endpoint: &'a str) -> Option<&'a str> {
        if endpoint == self.trunk {
            return None;
        }
        let ext = if self.freepbx {
            endpoint
        } else if let Some(ext) = endpoint.strip_prefix(ACCOUNT_PREFIX) {
            ext
        } else {
            endpoint.strip_prefix(MAC_PREFIX)?.trim_start_matches('0')
        };
        (!ext.is_empty() && self.endpoint(ext) == endpoint).then_some(ext)
    }

    /// The extension of a phone channel (`PJSIP/201-0000000a`, `SIP/7001234201-0000000a`).
    pub fn phone_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let (endpoint, _) = self.endpoint_of(channel)?.rsplit_once('-')?;
        self.extension_of(endpoint)
    }

    /// The extension of a phone device (`PJSIP/201`, `SIP/7001234201`).
    pub fn phone_of_device<'a>(&self, device: &'a str) -> Option<&'a str> {
        self.extension_of(self.endpoint_of(device)?)
    }

    /// The endpoint part of a channel or device of this technology (`PJSIP/201-0a` -> `201-0a`).
    fn endpoint_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.tech)?.strip_prefix('/')
    }

    /// A channel of a phone or the trunk (not Local, not anything else).
    pub fn is_sip(&self, channel: &str) -> bool {
        self.endpoint_of(channel).is_some()
    }

    /// A channel of the trunk.
    pub fn is_trunk(&self, channel: &str) -> bool {
        self.endpoint_of(channel)
            .and_then(|e| e.strip_prefix(self.trunk))
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// The device of a phone (`PJSIP/201`, `SIP/7001234201`).
    pub fn device(&self, ext: &str) -> String {
        format!("{}/{}", self.tech, self.endpoint(ext))
    }

    /// The trunk's device (`PJSIP/carrier`).
    pub fn trunk_device(&self) -> String {
        format!("{}/{}", self.tech, self.trunk)
    }

    /// What Dial() gets for a phone, after the technology: FreePBX dials the PJSIP contact
    /// (`201/sip:201@127.0.0.1:5070`), a bare dialplan the peer (`7001234201`).
    pub fn phone_dial(&self, ext: &str) -> String {
        match self.freepbx {
            true => format!("{ext}/sip:{ext}@127.0.0.1:5070"),
            false => self.endpoint(ext),
        }
    }

    /// What Dial() gets for an outside number on the trunk, after the technology:
    /// PJSIP's `15557654321@carrier`, chan_sip's `city/15557654321`.
    pub fn trunk_dial(&self, number: &str) -> String {
        match self.freepbx {
            true => format!("{number}@{}", self.trunk),
            false => format!("{}/{number}", self.trunk),
        }
    }

    /// The hint of a phone's extension (ExtensionStatus).
    pub fn hint(&self, ext: &str) -> String {
        match self.freepbx {
            true => format!("PJSIP/{ext}&Custom:DND{ext}"),
            false => self.device(ext),
        }
    }

    /// A queue member's interface (`Local/201@from-queue/n`).
    pub fn queue_member(&self, ext: &str) -> String {
        format!("Local/{ext}@{}/n", self.queue_members)
    }

    /// A queue member's state interface (QueueMemberStatus, QueueStatus).
    pub fn member_state(&self, ext: &str) -> String {
        match self.freepbx {
            true => format!("hint:{ext}@{}", self.hints),
            false => self.device(ext),
        }
    }
}

// Account numbers of a bare PBX's phones: the extension after the office's prefix.
const ACCOUNT_PREFIX: &str = "7001234";
// A phone provisioned by MAC address (Polycom's OUI), the extension in its last digits.
const MAC_PREFIX: &str = "0004f2";

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn names_of_phones_and_trunks() {
        let mut out = Vec::new();
        for style in [Style::FREEPBX, Style::BARE] {
            for ext in ["201", "205"] {
                let channel = format!("{}/{}-0000000a", style.tech, style.endpoint(ext));
                out.push(format!(
                    "{}: {channel} -> {:?}, dial {}",
                    style.name,
                    style.phone_of(&channel),
                    style.phone_dial(ext)
                ));
            }
            let trunk = format!("{}-0000000b", style.trunk_device());
            out.push(format!(
                "{}: {trunk} -> {:?} trunk {}, dial {}",
                style.name,
                style.phone_of(&trunk),
                style.is_trunk(&trunk),
                style.trunk_dial("15557654321")
            ));
        }
        expect![[r#"
            [
                "freepbx: PJSIP/201-0000000a -> Some(\"201\"), dial 201/sip:201@127.0.0.1:5070",
                "freepbx: PJSIP/205-0000000a -> Some(\"205\"), dial 205/sip:205@127.0.0.1:5070",
                "freepbx: PJSIP/carrier-0000000b -> None trunk true, dial 15557654321@carrier",
                "bare: SIP/7001234201-0000000a -> Some(\"201\"), dial 7001234201",
                "bare: SIP/0004f2000205-0000000a -> Some(\"205\"), dial 0004f2000205",
                "bare: SIP/city-0000000b -> None trunk true, dial city/15557654321",
            ]
        "#]]
        .assert_debug_eq(&out);
    }
}
