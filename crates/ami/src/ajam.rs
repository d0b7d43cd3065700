//! AJAM (AMI over HTTP, Asterisk's `/rawman` and `/mxml`): building the request for an
//! [`Action`] and parsing response bodies into [`Message`]s. Pure: the HTTP client is elsewhere.
//!
//! `/rawman` bodies are AMI messages without the greeting line. `/mxml` bodies wrap each
//! message in `<response type='object' id='...'><generic key='value' .../></response>`, with
//! the keys lowercased by Asterisk; they are kept as sent ([`Message::get`] ignores case).
//! `/manager` (HTML for a browser) carries nothing a program should parse and is refused.

use bytes::BytesMut;
use quick_xml::events::Event as Xml;
use quick_xml::Reader;

use crate::{Action, DecodeError, Decoder, Frame, Message};

/// Which AJAM endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AjamFormat {
    /// `/rawman`: AMI wire format, `Content-type: text/plain`.
    Rawman,
    /// `/mxml`: XML, `Content-type: text/xml`.
    Mxml,
}

impl AjamFormat {
    /// The endpoint path.
    pub fn path(self) -> &'static str {
        match self {
            AjamFormat::Rawman => "/rawman",
            AjamFormat::Mxml => "/mxml",
        }
    }

    /// The format of a response by its `Content-type`; `None` for anything else (the HTML of
    /// `/manager`, an error page).
    pub fn from_content_type(content_type: &str) -> Option<AjamFormat> {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if mime.eq_ignore_ascii_case("text/plain") {
            Some(AjamFormat::Rawman)
        } else if mime.eq_ignore_ascii_case("text/xml")
            || mime.eq_ignore_ascii_case("application/xml")
        {
            Some(AjamFormat::Mxml)
        } else {
            None
        }
    }
}

/// Why a body could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum AjamError {
    /// The `/rawman` body has a malformed message.
    #[error("AJAM rawman body: {0}")]
    Decode(#[from] DecodeError),
    /// The `/mxml` body is not well-formed XML.
    #[error("AJAM mxml body at byte {position}: {source}")]
    Xml {
        /// Byte offset of the error in the body.
        position: u64,
        /// What quick-xml found.
        source: quick_xml::Error,
    },
    /// The `Content-type` is neither `/rawman`'s nor `/mxml`'s.
    #[error("not an AJAM response (Content-type {0:?})")]
    NotAjam(String),
}

/// The path and query for `action` on `format`'s endpoint, e.g.
/// `/rawman?action=Ping&ActionID=a-1`. Repeated fields stay repeated: Asterisk turns every
/// query parameter into one AMI header.
pub fn request_target(format: AjamFormat, action: &Action, action_id: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("action", action.name());
    if let Some(id) = action_id {
        query.append_pair("ActionID", id);
    }
    for (k, v) in action.as_message().iter().skip(1) {
        if action_id.is_none() || !k.eq_ignore_ascii_case("ActionID") {
            query.append_pair(k, v);
        }
    }
    // `+` for a space is the form encoding; `%20` means the same to every URL decoder, also
    // to those that do not know forms.
    let query = query.finish().replace('+', "%20");
    format!("{}?{query}", format.path())
}

/// Parses a response body by its `Content-type`.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Vec<Message>, AjamError> {
    match AjamFormat::from_content_type(content_type) {
        Some(AjamFormat::Rawman) => parse_rawman(body),
        Some(AjamFormat::Mxml) => parse_mxml(body),
        None => Err(AjamError::NotAjam(content_type.to_owned())),
    }
}

/// Parses a `/rawman` body: AMI messages, no greeting.
pub fn parse_rawman(body: &[u8]) -> Result<Vec<Message>, AjamError> {
    let mut buf = BytesMut::with_capacity(body.len() + 4);
    buf.extend_from_slice(body);
    // The body is complete: a last message without its blank line still ends here.
    buf.extend_from_slice(b"\r\n\r\n");
    let mut decoder = Decoder::without_banner();
    let mut messages = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        match frame {
            Frame::Message(m) => messages.push(m),
            Frame::Banner(_) => {}
        }
    }
    Ok(messages)
}

/// Parses a `/mxml` body: one message per `<generic>` element, attributes in order.
pub fn parse_mxml(body: &[u8]) -> Result<Vec<Message>, AjamError> {
    let mut reader = Reader::from_reader(body);
    let mut messages = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut scratch)
            .map_err(|source| AjamError::Xml {
                position: reader.error_position(),
                source,
            })?;
        match event {
            Xml::Start(e) | Xml::Empty(e) if e.name().as_ref() == b"generic" => {
                let mut msg = Message::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| AjamError::Xml {
                        position: reader.error_position(),
                        source: e.into(),
                    })?;
                    let value =
                        attr.decode_and_unescape_value(reader.decoder())
                            .map_err(|source| AjamError::Xml {
                                position: reader.buffer_position(),
                                source,
                            })?;
                    msg.push(&String::from_utf8_lossy(attr.key.as_ref()), &value);
                }
                messages.push(msg);
            }
            Xml::Eof => return Ok(messages),
            _ => {}
        }
        scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Originate;
    use expect_test::expect;

    #[test]
    fn request_target_encodes_and_keeps_repeated_fields() {
        let mut o = Originate::exten("Local/15550001000@from-pstn", "pstn-caller", "s", 1);
        o.caller_id = Some("\"Jane Caller\" <15551234567>".into());
        o.variables = vec![("A".into(), "1".into()), ("B".into(), "x&y+z".into())];
        let target = request_target(
            AjamFormat::Rawman,
            &Action::originate(o).field("ActionID", "ignored"),
            Some("ajam-1"),
        );
        expect![[r#"/rawman?action=Originate&ActionID=ajam-1&Channel=Local%2F15550001000%40from-pstn&Context=pstn-caller&Exten=s&Priority=1&CallerID=%22Jane%20Caller%22%20%3C15551234567%3E&Async=yes&Variable=A%3D1&Variable=B%3Dx%26y%2Bz"#]]
            .assert_eq(&target);
        expect![[r#"/mxml?action=Ping"#]].assert_eq(&request_target(
            AjamFormat::Mxml,
            &Action::ping(),
            None,
        ));
    }

    #[test]
    fn mxml_escapes_and_bad_xml() {
        let body = b"<ajax-response><response type='object' id='unknown'><generic response='Error' message='a &apos;b&apos; &lt;c&gt; &amp;' /></response></ajax-response>";
        expect![[r#"
            [
                [
                    "response: Error",
                    "message: a 'b' <c> &",
                ],
            ]
        "#]]
        .assert_debug_eq(&parse_mxml(body).unwrap());
        let err = parse_mxml(b"<ajax-response><generic a='1></ajax-response>").unwrap_err();
        assert!(matches!(err, AjamError::Xml { .. }), "{err}");
    }
}
