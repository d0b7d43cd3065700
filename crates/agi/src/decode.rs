//! Streaming decoder for what Asterisk sends on an AGI socket: the environment block, then
//! reply lines (`200`, `100`, `510`, `511`, multi-line `520-`) and `HANGUP` notices.

use memchr::memchr;

use crate::env::Environment;
use crate::reply::{Reply, Success};

/// Longest line accepted by default. Asterisk's own command buffer is 2 KiB, but a reply can
/// carry a long variable value.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;

/// Most environment variables accepted: ~25 standard ones plus up to 128 `agi_arg_N`.
pub const MAX_ENV_VARS: usize = 512;

/// One decoded unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The whole `agi_*` block (after its terminating empty line).
    Environment(Environment),
    /// A final reply to the command in flight.
    Reply(Reply),
    /// `100 result=0 Trying...`: the command is running, its reply follows later.
    Trying,
    /// `HANGUP`: the channel hung up. Commands still get replies (mostly `511`).
    Hangup,
}

/// Input the decoder could not use. The decoder stays usable after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("AGI line longer than {limit} bytes; skipped it")]
    LineTooLong { limit: usize },
    #[error("environment line is not `agi_name: value`: {0:?}")]
    BadEnvLine(String),
    #[error("more than {MAX_ENV_VARS} environment variables; ignored the rest")]
    TooManyEnvVars,
    #[error("not an AGI reply: {0:?}")]
    BadReply(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Environment,
    Replies,
}

/// Incremental decoder: [`feed`](Decoder::feed) bytes as they arrive, then take frames with
/// [`next_frame`](Decoder::next_frame) until it returns `None`.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as lines; dropped in bulk on the next feed.
    consumed: usize,
    max_line_len: usize,
    /// Dropping the rest of an over-long line.
    skipping: bool,
    phase: Phase,
    env: Environment,
    /// The environment went over [`MAX_ENV_VARS`] (reported once).
    env_overflow: bool,
    /// Lines of a `520-` usage block so far.
    usage: Option<String>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::with_max_line_len(DEFAULT_MAX_LINE_LEN)
    }

    /// A decoder that skips (and reports) lines longer than `max_line_len` bytes.
    pub fn with_max_line_len(max_line_len: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            consumed: 0,
            max_line_len,
            skipping: false,
            phase: Phase::Environment,
            env: Environment::default(),
            env_overflow: false,
            usage: None,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held waiting for the end of a line; never more than the line bound.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next frame, an error about input it skipped, or `None` when it needs more bytes.
    pub fn next_frame(&mut self) -> Option<Result<Frame, DecodeError>> {
        loop {
            let line = match self.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let decoded = match self.phase {
                Phase::Environment => self.env_line(line),
                Phase::Replies => self.reply_line(line),
            };
            if let Some(result) = decoded {
                return Some(result);
            }
        }
    }

    /// The next complete line, without its line ending.
    fn next_line(&mut self) -> Result<Option<String>, DecodeError> {
        let pending = &self.buf[self.consumed..];
        let Some(nl) = memchr(b'\n', pending) else {
            if pending.len() > self.max_line_len {
                // Keep nothing of the over-long line; its end is dropped when it arrives.
                self.consumed = self.buf.len();
                let report = !self.skipping;
                self.skipping = true;
                if report {
                    return Err(DecodeError::LineTooLong {
                        limit: self.max_line_len,
                    });
                }
            }
            return Ok(None);
        };
        self.consumed += nl + 1;
        let raw = &pending[..nl];
        if std::mem::take(&mut self.skipping) {
            // The tail of the over-long line: already reported, go on with the next one.
            return self.next_line();
        }
        if raw.len() > self.max_line_len {
            return Err(DecodeError::LineTooLong {
                limit: self.max_line_len,
            });
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        Ok(Some(String::from_utf8_lossy(raw).into_owned()))
    }

    fn env_line(&mut self, line: String) -> Option<Result<Frame, DecodeError>> {
        if line.is_empty() {
            self.phase = Phase::Replies;
            return Some(Ok(Frame::Environment(std::mem::take(&mut self.env))));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Some(Err(DecodeError::BadEnvLine(line)));
        };
        if self.env.len() >= MAX_ENV_VARS {
            // Reported once, at the first variable over the bound.
            let report = !std::mem::replace(&mut self.env_overflow, true);
            return report.then_some(Err(DecodeError::TooManyEnvVars));
        }
        let value = value.strip_prefix(' ').unwrap_or(value);
        self.env.push(name.to_owned(), value.to_owned());
        None
    }

    fn reply_line(&mut self, line: String) -> Option<Result<Frame, DecodeError>> {
        if let Some(usage) = &mut self.usage {
            if let Some(last) = line.strip_prefix("520 ") {
                usage.push_str(last);
                let usage = self.usage.take().unwrap_or_default();
                return Some(Ok(Frame::Reply(Reply::Usage(usage))));
            }
            usage.push_str(&line);
            usage.push('\n');
            return None;
        }
        if line == "HANGUP" {
            return Some(Ok(Frame::Hangup));
        }
        if let Some(first) = line.strip_prefix("520-") {
            self.usage = Some(format!("{first}\n"));
            return None;
        }
        let (code, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let frame = match code {
            "200" => Success::parse(rest).map(|s| Frame::Reply(Reply::Success(s))),
            "100" => Some(Frame::Trying),
            "510" => Some(Frame::Reply(Reply::InvalidCommand(rest.to_owned()))),
            "511" => Some(Frame::Reply(Reply::DeadChannel(rest.to_owned()))),
            "520" => Some(Frame::Reply(Reply::Usage(rest.to_owned()))),
            _ => None,
        };
        Some(frame.ok_or(DecodeError::BadReply(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Decodes `input` (after an empty environment) and prints one frame or error a line.
    fn check(input: &str, expect: Expect) {
        let mut dec = Decoder::new();
        dec.feed(b"\n");
        dec.feed(input.as_bytes());
        let out: Vec<String> = std::iter::from_fn(|| dec.next_frame())
            .skip(1)
            .map(|f| match f {
                Ok(Frame::Reply(Reply::Success(s))) => format!("{s:?}"),
                Ok(f) => format!("{f:?}"),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        expect.assert_eq(&out.join("\n"));
    }

    #[test]
    fn replies() {
        check(
            "200 result=1\n200 result=1 (15551234567)\r\n200 result=-1\n\
             200 result=0 endpos=12345\n200 result=35 (dtmf) endpos=8000\n\
             200 result= (timeout)\n200 result=1 ((nested) parens)\n",
            expect![[r#"
                Success { result: "1", data: None, endpos: None }
                Success { result: "1", data: Some("15551234567"), endpos: None }
                Success { result: "-1", data: None, endpos: None }
                Success { result: "0", data: None, endpos: Some(12345) }
                Success { result: "35", data: Some("dtmf"), endpos: Some(8000) }
                Success { result: "", data: Some("timeout"), endpos: None }
                Success { result: "1", data: Some("(nested) parens"), endpos: None }"#]],
        );
    }

    #[test]
    fn status_codes_usage_and_hangup() {
        check(
            "100 result=0 Trying...\nHANGUP\n510 Invalid or unknown command\n\
             511 Command Not Permitted on a dead channel or intercept routine\n\
             520-Invalid command syntax.  Proper usage follows:\n Usage: GET DATA <file>\n\n\
             520 End of proper usage.\n\
             520 Invalid command syntax.  Proper usage not available.\n",
            expect![[r#"
                Trying
                Hangup
                Reply(InvalidCommand("Invalid or unknown command"))
                Reply(DeadChannel("Command Not Permitted on a dead channel or intercept routine"))
                Reply(Usage("Invalid command syntax.  Proper usage follows:\n Usage: GET DATA <file>\n\nEnd of proper usage."))
                Reply(Usage("Invalid command syntax.  Proper usage not available."))"#]],
        );
    }

    #[test]
    fn garbage_is_reported_and_decoding_goes_on() {
        check(
            "hello\n200 no result\n\n200 result=1\n",
            expect![[r#"
                error: not an AGI reply: "hello"
                error: not an AGI reply: "200 no result"
                error: not an AGI reply: ""
                Success { result: "1", data: None, endpos: None }"#]],
        );
    }

    #[test]
    fn environment_block() {
        let mut dec = Decoder::new();
        dec.feed(b"agi_network: yes\nagi_accountcode: \nagi_x:y\nbroken\n");
        dec.feed(b"\n200 result=1\n");
        let frames: Vec<_> = std::iter::from_fn(|| dec.next_frame()).collect();
        expect![[r#"
            [
                Err(
                    BadEnvLine(
                        "broken",
                    ),
                ),
                Ok(
                    Environment(
                        Environment {
                            vars: [
                                (
                                    "agi_network",
                                    "yes",
                                ),
                                (
                                    "agi_accountcode",
                                    "",
                                ),
                                (
                                    "agi_x",
                                    "y",
                                ),
                            ],
                        },
                    ),
                ),
                Ok(
                    Reply(
                        Success(
                            Success {
                                result: "1",
                                data: None,
                                endpos: None,
                            },
                        ),
                    ),
                ),
            ]
        "#]]
        .assert_debug_eq(&frames);
    }

    #[test]
    fn long_lines_are_skipped_within_the_bound() {
        let mut dec = Decoder::with_max_line_len(16);
        let mut out = Vec::new();
        for chunk in [
            &b"\n200 result=1 (0123456789"[..],
            b"0123456789",
            b"0123456789)\n200 result=2\n",
        ] {
            dec.feed(chunk);
            out.extend(std::iter::from_fn(|| dec.next_frame()));
            assert!(dec.buffered() <= 16, "{} bytes held", dec.buffered());
        }
        expect![[r#"
            [
                Ok(
                    Environment(
                        Environment {
                            vars: [],
                        },
                    ),
                ),
                Err(
                    LineTooLong {
                        limit: 16,
                    },
                ),
                Ok(
                    Reply(
                        Success(
                            Success {
                                result: "2",
                                data: None,
                                endpos: None,
                            },
                        ),
                    ),
                ),
            ]
        "#]]
        .assert_debug_eq(&out);
    }

    #[test]
    fn too_many_env_vars_reported_once() {
        let mut dec = Decoder::new();
        for i in 0..MAX_ENV_VARS + 3 {
            dec.feed(format!("agi_arg_{i}: x\n").as_bytes());
        }
        dec.feed(b"\n");
        let frames: Vec<_> = std::iter::from_fn(|| dec.next_frame()).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], Err(DecodeError::TooManyEnvVars));
        let Ok(Frame::Environment(env)) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(env.iter().count(), MAX_ENV_VARS);
    }
}
