//! Streaming AMI decoder: bytes in, [`Frame`]s out; `Ok(None)` means "need more bytes".
//!
//! Tolerates what real Asterisk (and AMI proxies) send: CRLF or bare LF line endings, stray
//! blank lines between messages, empty values, values that contain `: `, repeated keys, and
//! the old `Response: Follows` ... `--END COMMAND--` command output (normalized into
//! `Output:` fields, the form Asterisk 14+ uses). The buffer is bounded: a message longer
//! than the limit is reported once as [`DecodeError::MessageTooLong`] and skipped, and the
//! decoder carries on with the next message.

use bytes::{Buf, BytesMut};
use memchr::memchr;

use crate::Message;

/// Default bound on one message (4 MiB: big `Command` outputs stay well below it).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

const BANNER_PREFIX: &str = "Asterisk Call Manager/";
const END_COMMAND: &str = "--END COMMAND--";

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The greeting line `Asterisk Call Manager/X.Y.Z` sent once on connect.
    Banner(Banner),
    /// An event, a response, or (when decoding what a client sent) an action.
    Message(Message),
}

/// The AMI greeting. Its version is the *AMI protocol* version (`11.0.0` on Asterisk 22),
/// not the Asterisk version: that one comes from `CoreSettings` (`AsteriskVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// Product name before the slash, e.g. `Asterisk Call Manager`.
    pub product: String,
    /// AMI protocol version, e.g. `11.0.0`.
    pub ami_version: String,
}

impl Banner {
    /// Parses a greeting line (without its line ending).
    pub fn parse(line: &str) -> Option<Banner> {
        let (product, version) = line.split_once('/')?;
        if !line.starts_with(BANNER_PREFIX) && !product.ends_with("Call Manager") {
            return None;
        }
        Some(Banner {
            product: product.to_owned(),
            ami_version: version.trim().to_owned(),
        })
    }
}

/// Decoding failures. The decoder stays usable after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// One message exceeded the configured bound; it was skipped.
    #[error("AMI message longer than {limit} bytes; skipped it")]
    MessageTooLong {
        /// The bound in force.
        limit: usize,
    },
}

/// Incremental decoder. Feed it a growing buffer; it consumes what it decodes.
#[derive(Debug)]
pub struct Decoder {
    max_message_len: usize,
    banner_checked: bool,
    /// Bytes of the buffer already scanned for the end of the current message, so a message
    /// arriving in many small reads is scanned once, not once per read.
    scanned: usize,
    /// Skipping the rest of an over-long message.
    skipping: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder expecting a banner first (a TCP AMI connection) with the default bound.
    pub fn new() -> Self {
        Self::with_max_message_len(DEFAULT_MAX_MESSAGE_LEN)
    }

    /// A decoder with a custom bound on one message.
    pub fn with_max_message_len(max_message_len: usize) -> Self {
        Decoder {
            max_message_len,
            banner_checked: false,
            scanned: 0,
            skipping: false,
        }
    }

    /// A decoder for streams without a greeting line (AJAM bodies, client-side actions).
    pub fn without_banner() -> Self {
        let mut d = Self::new();
        d.banner_checked = true;
        d
    }

    /// Decodes the next frame from `buf`, consuming its bytes. `Ok(None)`: need more input.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if !self.banner_checked {
            let Some(nl) = memchr(b'\n', buf) else {
                return self.check_len(buf).map(|()| None);
            };
            self.banner_checked = true;
            let line = trim_cr(&buf[..nl]);
            if let Some(banner) = std::str::from_utf8(line).ok().and_then(Banner::parse) {
                buf.advance(nl + 1);
                return Ok(Some(Frame::Banner(banner)));
            }
        }
        loop {
            if self.skipping {
                match find_message_end(buf, self.scanned.min(buf.len())) {
                    End::Found { next, .. } => {
                        buf.advance(next);
                        self.skipping = false;
                        self.scanned = 0;
                    }
                    End::NeedMore { scanned } => {
                        // Keep only what may hold the start of the terminator.
                        let keep = buf.len() - scanned.min(buf.len());
                        buf.advance(buf.len() - keep);
                        self.scanned = 0;
                        return Ok(None);
                    }
                }
            }
            // Stray blank lines between messages carry nothing.
            let blank = leading_blank_len(buf);
            if blank > 0 {
                buf.advance(blank);
                self.scanned = self.scanned.saturating_sub(blank);
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let follows = starts_with_follows(buf);
            let end = if follows {
                find_end_command(buf, self.scanned)
            } else {
                find_message_end(buf, self.scanned)
            };
            match end {
                End::Found { body, next } => {
                    self.scanned = 0;
                    if body > self.max_message_len {
                        buf.advance(next);
                        return Err(DecodeError::MessageTooLong {
                            limit: self.max_message_len,
                        });
                    }
                    let msg = parse_message(&buf[..body], follows);
                    buf.advance(next);
                    if msg.is_empty() {
                        continue;
                    }
                    return Ok(Some(Frame::Message(msg)));
                }
                End::NeedMore { scanned } => {
                    self.scanned = scanned;
                    if buf.len() > self.max_message_len {
                        // Drop what we have and resync on the next blank line, also for an
                        // endless command output (its `--END COMMAND--` may never come).
                        self.skipping = true;
                        self.scanned = 0;
                        buf.advance(buf.len().saturating_sub(2));
                        return Err(DecodeError::MessageTooLong {
                            limit: self.max_message_len,
                        });
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn check_len(&mut self, buf: &mut BytesMut) -> Result<(), DecodeError> {
        if buf.len() > self.max_message_len {
            // No line end within the bound: not an AMI greeting; treat the stream as
            // banner-less and skip the garbage up to the next message boundary.
            self.banner_checked = true;
            self.skipping = true;
            self.scanned = 0;
            buf.advance(buf.len().saturating_sub(2));
            return Err(DecodeError::MessageTooLong {
                limit: self.max_message_len,
            });
        }
        Ok(())
    }
}

enum End {
    /// `body`: length of the message text; `next`: where the next message starts.
    Found { body: usize, next: usize },
    /// No terminator yet; `scanned` bytes need not be looked at again.
    NeedMore { scanned: usize },
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn leading_blank_len(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// Finds the blank line that ends a message: `\n\n` or `\n\r\n`.
fn find_message_end(buf: &[u8], from: usize) -> End {
    let mut pos = from;
    while let Some(off) = memchr(b'\n', &buf[pos..]) {
        let nl = pos + off;
        match buf.get(nl + 1) {
            Some(b'\n') => {
                return End::Found {
                    body: nl,
                    next: nl + 2,
                }
            }
            Some(b'\r') => match buf.get(nl + 2) {
                Some(b'\n') => {
                    return End::Found {
                        body: nl,
                        next: nl + 3,
                    }
                }
                Some(_) => {}
                None => return End::NeedMore { scanned: nl },
            },
            Some(_) => {}
            None => return End::NeedMore { scanned: nl },
        }
        pos = nl + 1;
    }
    End::NeedMore { scanned: buf.len() }
}

fn starts_with_follows(buf: &[u8]) -> bool {
    const P: &[u8] = b"Response: Follows";
    buf.len() >= P.len() && buf[..P.len()].eq_ignore_ascii_case(P)
}

/// Old command output ends with a `--END COMMAND--` line (then a blank line); the output
/// itself may contain blank lines, so the usual terminator does not apply.
fn find_end_command(buf: &[u8], from: usize) -> End {
    let mut line_start = from;
    while let Some(off) = memchr(b'\n', &buf[line_start..]) {
        let nl = line_start + off;
        let line = trim_cr(&buf[line_start..nl]);
        if line.ends_with(END_COMMAND.as_bytes()) {
            // Swallow the blank line that follows, when it is there already.
            let rest = leading_blank_len(&buf[nl + 1..]).min(2);
            return End::Found {
                body: nl,
                next: nl + 1 + rest,
            };
        }
        line_start = nl + 1;
    }
    End::NeedMore {
        scanned: line_start,
    }
}

fn parse_message(body: &[u8], follows: bool) -> Message {
    // Valid UTF-8 is the rule (and checking it is fast); invalid bytes (a Latin-1 caller
    // name) become U+FFFD rather than losing the message.
    let text = match std::str::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    if follows {
        parse_follows(&text)
    } else {
        Message::from_wire(&text)
    }
}

/// The old command output: the headers, then every other line as an `Output` field.
fn parse_follows(text: &str) -> Message {
    let mut msg = Message::with_capacity(text.len(), text.matches('\n').count() + 1);
    let mut in_output = false;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(out) = line.strip_suffix(END_COMMAND) {
            if !out.is_empty() {
                push_output(&mut msg, out);
            }
            continue;
        }
        if in_output {
            push_output(&mut msg, line);
            continue;
        }
        match split_field(line) {
            Some((k, v)) if is_follows_header(k) => msg.push(k, v),
            _ => {
                in_output = true;
                push_output(&mut msg, line);
            }
        }
    }
    msg
}

fn push_output(msg: &mut Message, line: &str) {
    for l in line.split('\n') {
        msg.push("Output", l);
    }
}

fn is_follows_header(key: &str) -> bool {
    ["Response", "Privilege", "ActionID", "Message"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(key))
}

fn split_field(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let key = &line[..colon];
    let value = &line[colon + 1..];
    Some((key, value.strip_prefix(' ').unwrap_or(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(input: &str, expect: Expect) {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(input.as_bytes());
        let mut out = String::new();
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => out.push_str(&format!("{f:?}\n")),
                Ok(None) => break,
                Err(e) => out.push_str(&format!("error: {e}\n")),
            }
        }
        out.push_str(&format!("left: {:?}\n", String::from_utf8_lossy(&buf)));
        expect.assert_eq(&out);
    }

    #[test]
    fn banner_then_response() {
        check(
            "Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n",
            expect![[r#"
                Banner(Banner { product: "Asterisk Call Manager", ami_version: "11.0.0" })
                Message(["Response: Success", "ActionID: 1", "Message: Authentication accepted"])
                left: ""
            "#]],
        );
    }

    #[test]
    fn lf_only_blank_lines_empty_values_and_colons_in_values() {
        check(
            "\n\nEvent: VarSet\nSystemName: \nValue: a: b:c\nKey:x\n\n\r\n",
            expect![[r#"
                Message(["Event: VarSet", "SystemName: ", "Value: a: b:c", "Key: x"])
                left: ""
            "#]],
        );
    }

    #[test]
    fn partial_input_waits() {
        check(
            "Event: Newchannel\r\nChannel: PJSIP/201-0000001f\r\n",
            expect![[r#"
                left: "Event: Newchannel\r\nChannel: PJSIP/201-0000001f\r\n"
            "#]],
        );
    }

    #[test]
    fn old_command_output_becomes_output_fields() {
        check(
            "Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nAsterisk 13.1 built by x\r\n\r\nChannel: a\r\n--END COMMAND--\r\n\r\nResponse: Success\r\n\r\n",
            expect![[r#"
                Message(["Response: Follows", "Privilege: Command", "ActionID: 7", "Output: Asterisk 13.1 built by x", "Output: ", "Output: Channel: a"])
                Message(["Response: Success"])
                left: ""
            "#]],
        );
    }

    #[test]
    fn over_long_message_is_skipped_and_decoding_resumes() {
        let mut dec = Decoder::with_max_message_len(64);
        let long = format!(
            "Event: X\r\nData: {}\r\n\r\nEvent: Y\r\n\r\n",
            "z".repeat(200)
        );
        let mut buf = BytesMut::from(long.as_bytes());
        dec.banner_checked = true;
        let mut got = vec![];
        for _ in 0..5 {
            got.push(format!("{:?}", dec.decode(&mut buf)));
        }
        expect![[r#"
            [
                "Err(MessageTooLong { limit: 64 })",
                "Ok(Some(Message([\"Event: Y\"])))",
                "Ok(None)",
                "Ok(None)",
                "Ok(None)",
            ]
        "#]]
        .assert_debug_eq(&got);
    }
}
