//! The AGI command set, typed, and its wire encoding (one line, arguments quoted the way
//! Asterisk's `parse_args` reads them back).

use std::borrow::Cow;

/// Asterisk reads an AGI command into a buffer of this many bytes (`AGI_BUF_LEN`); a longer
/// line would be cut and misread, so it is refused here.
pub const MAX_COMMAND_LEN: usize = 2048;

/// One AGI command. Optional arguments left `None` are omitted, or sent as Asterisk's
/// default when a later one is given (arguments are positional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Answer,
    AsyncAgiBreak,
    ChannelStatus {
        channel: Option<&'a str>,
    },
    ControlStreamFile {
        file: &'a str,
        escape_digits: &'a str,
        skip_ms: Option<u32>,
        forward_digit: Option<&'a str>,
        rewind_digit: Option<&'a str>,
        pause_digit: Option<&'a str>,
        offset_ms: Option<u64>,
    },
    DatabaseDel {
        family: &'a str,
        key: &'a str,
    },
    DatabaseDelTree {
        family: &'a str,
        key_tree: Option<&'a str>,
    },
    DatabaseGet {
        family: &'a str,
        key: &'a str,
    },
    DatabasePut {
        family: &'a str,
        key: &'a str,
        value: &'a str,
    },
    /// Runs a dialplan application; `options` is its whole argument string (`a,b,c`).
    Exec {
        application: &'a str,
        options: &'a str,
    },
    GetData {
        file: &'a str,
        timeout_ms: Option<u32>,
        max_digits: Option<u32>,
    },
    /// Evaluates an expression like `${CALLERID(num)}`, optionally on another channel.
    GetFullVariable {
        expression: &'a str,
        channel: Option<&'a str>,
    },
    GetOption {
        file: &'a str,
        escape_digits: &'a str,
        timeout_ms: Option<u32>,
    },
    GetVariable {
        name: &'a str,
    },
    Gosub {
        context: &'a str,
        extension: &'a str,
        priority: &'a str,
        arguments: Option<&'a str>,
    },
    Hangup {
        channel: Option<&'a str>,
    },
    Noop,
    ReceiveChar {
        timeout_ms: u32,
    },
    ReceiveText {
        timeout_ms: u32,
    },
    RecordFile {
        file: &'a str,
        format: &'a str,
        escape_digits: &'a str,
        /// `None`: no time limit (`-1`).
        timeout_ms: Option<u32>,
        offset_samples: Option<u64>,
        beep: bool,
        silence_s: Option<u32>,
    },
    SayAlpha {
        text: &'a str,
        escape_digits: &'a str,
    },
    SayDate {
        unix_time: i64,
        escape_digits: &'a str,
    },
    SayDateTime {
        unix_time: i64,
        escape_digits: &'a str,
        /// `None`: Asterisk's English default, which is also sent when only `timezone` is
        /// given (AGI cannot ask for the channel language's default together with a zone).
        format: Option<&'a str>,
        timezone: Option<&'a str>,
    },
    SayDigits {
        digits: &'a str,
        escape_digits: &'a str,
    },
    SayNumber {
        number: i64,
        escape_digits: &'a str,
        gender: Option<&'a str>,
    },
    SayPhonetic {
        text: &'a str,
        escape_digits: &'a str,
    },
    SayTime {
        unix_time: i64,
        escape_digits: &'a str,
    },
    SendImage {
        image: &'a str,
    },
    SendText {
        text: &'a str,
    },
    /// `0` cancels a pending automatic hangup.
    SetAutoHangup {
        seconds: u32,
    },
    SetCallerId {
        number: &'a str,
    },
    SetContext {
        context: &'a str,
    },
    SetExtension {
        extension: &'a str,
    },
    SetMusic {
        on: bool,
        class: Option<&'a str>,
    },
    /// A priority number or label.
    SetPriority {
        priority: &'a str,
    },
    SetVariable {
        name: &'a str,
        value: &'a str,
    },
    SpeechActivateGrammar {
        name: &'a str,
    },
    SpeechCreate {
        engine: &'a str,
    },
    SpeechDeactivateGrammar {
        name: &'a str,
    },
    SpeechDestroy,
    SpeechLoadGrammar {
        name: &'a str,
        path: &'a str,
    },
    SpeechRecognize {
        prompt: &'a str,
        timeout_ms: u32,
        offset_samples: Option<u64>,
    },
    SpeechSet {
        name: &'a str,
        value: &'a str,
    },
    SpeechUnloadGrammar {
        name: &'a str,
    },
    StreamFile {
        file: &'a str,
        escape_digits: &'a str,
        offset_samples: Option<u64>,
    },
    TddMode {
        mode: TddMode,
    },
    /// A message in the Asterisk log at verbosity `level` (1-4).
    Verbose {
        message: &'a str,
        level: u8,
    },
    /// `None`: wait forever (`-1`).
    WaitForDigit {
        timeout_ms: Option<u32>,
    },
}

/// `TDD MODE` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TddMode {
    On,
    Off,
    Mate,
    Tdd,
}

/// Why a command cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// AGI has no escape for line breaks: the line would end early and the rest would run
    /// as a second command.
    #[error("AGI argument contains a line break: {0:?}")]
    LineBreak(String),
    #[error("AGI command is {len} bytes, over Asterisk's limit of {MAX_COMMAND_LEN}")]
    TooLong { len: usize },
}

type Arg<'a> = Cow<'a, str>;

fn b(s: &str) -> Arg<'_> {
    Cow::Borrowed(s)
}

fn num(n: impl ToString) -> Arg<'static> {
    Cow::Owned(n.to_string())
}

/// Positional optional arguments: each is sent up to the last one given, a missing one
/// before it as Asterisk's default (the second element).
fn optional<'a, const N: usize>(
    args: &mut Vec<Arg<'a>>,
    tail: [(Option<Arg<'a>>, &'static str); N],
) {
    let given = tail
        .iter()
        .rposition(|(a, _)| a.is_some())
        .map_or(0, |i| i + 1);
    for (arg, default) in tail.into_iter().take(given) {
        args.push(arg.unwrap_or(Cow::Borrowed(default)));
    }
}

impl Command<'_> {
    /// The command's keyword(s) and its arguments, unquoted.
    fn parts(&self) -> (&'static str, Vec<Arg<'_>>) {
        use Command::*;
        let mut args = Vec::new();
        let keyword = match *self {
            Answer => "ANSWER",
            AsyncAgiBreak => "ASYNCAGI BREAK",
            ChannelStatus { channel } => {
                optional(&mut args, [(channel.map(b), "")]);
                "CHANNEL STATUS"
            }
            ControlStreamFile {
                file,
                escape_digits,
                skip_ms,
                forward_digit,
                rewind_digit,
                pause_digit,
                offset_ms,
            } => {
                args.extend([b(file), b(escape_digits)]);
                optional(
                    &mut args,
                    [
                        (skip_ms.map(num), "3000"),
                        (forward_digit.map(b), "#"),
                        (rewind_digit.map(b), "*"),
                        (pause_digit.map(b), ""),
                        (offset_ms.map(num), "0"),
                    ],
                );
                "CONTROL STREAM FILE"
            }
            DatabaseDel { family, key } => {
                args.extend([b(family), b(key)]);
                "DATABASE DEL"
            }
            DatabaseDelTree { family, key_tree } => {
                args.push(b(family));
                optional(&mut args, [(key_tree.map(b), "")]);
                "DATABASE DELTREE"
            }
            DatabaseGet { family, key } => {
                args.extend([b(family), b(key)]);
                "DATABASE GET"
            }
            DatabasePut { family, key, value } => {
                args.extend([b(family), b(key), b(value)]);
                "DATABASE PUT"
            }
            Exec {
                application,
                options,
            } => {
                args.extend([b(application), b(options)]);
                "EXEC"
            }
            GetData {
                file,
                timeout_ms,
                max_digits,
            } => {
                args.push(b(file));
                optional(
                    &mut args,
                    [(timeout_ms.map(num), "0"), (max_digits.map(num), "1024")],
                );
                "GET DATA"
            }
            GetFullVariable {
                expression,
                channel,
            } => {
                args.push(b(expression));
                optional(&mut args, [(channel.map(b), "")]);
                "GET FULL VARIABLE"
            }
            GetOption {
                file,
                escape_digits,
                timeout_ms,
            } => {
                args.extend([b(file), b(escape_digits)]);
                optional(&mut args, [(timeout_ms.map(num), "0")]);
                "GET OPTION"
            }
            GetVariable { name } => {
                args.push(b(name));
                "GET VARIABLE"
            }
            Gosub {
                context,
                extension,
                priority,
                arguments,
            } => {
                args.extend([b(context), b(extension), b(priority)]);
                optional(&mut args, [(arguments.map(b), "")]);
                "GOSUB"
            }
            Hangup { channel } => {
                optional(&mut args, [(channel.map(b), "")]);
                "HANGUP"
            }
            Noop => "NOOP",
            ReceiveChar { timeout_ms } => {
                args.push(num(timeout_ms));
                "RECEIVE CHAR"
            }
            ReceiveText { timeout_ms } => {
                args.push(num(timeout_ms));
                "RECEIVE TEXT"
            }
            RecordFile {
                file,
                format,
                escape_digits,
                timeout_ms,
                offset_samples,
                beep,
                silence_s,
            } => {
                args.extend([b(file), b(format), b(escape_digits)]);
                args.push(timeout_ms.map_or(b("-1"), num));
                // Asterisk recognises these three by their form, not their position.
                args.extend(offset_samples.map(num));
                args.extend(beep.then(|| b("BEEP")));
                args.extend(silence_s.map(|s| num(format!("s={s}"))));
                "RECORD FILE"
            }
            SayAlpha {
                text,
                escape_digits,
            } => {
                args.extend([b(text), b(escape_digits)]);
                "SAY ALPHA"
            }
            SayDate {
                unix_time,
                escape_digits,
            } => {
                args.extend([num(unix_time), b(escape_digits)]);
                "SAY DATE"
            }
            SayDateTime {
                unix_time,
                escape_digits,
                format,
                timezone,
            } => {
                args.extend([num(unix_time), b(escape_digits)]);
                optional(
                    &mut args,
                    [
                        (format.map(b), "ABdY 'digits/at' IMp"),
                        (timezone.map(b), ""),
                    ],
                );
                "SAY DATETIME"
            }
            SayDigits {
                digits,
                escape_digits,
            } => {
                args.extend([b(digits), b(escape_digits)]);
                "SAY DIGITS"
            }
            SayNumber {
                number,
                escape_digits,
                gender,
            } => {
                args.extend([num(number), b(escape_digits)]);
                optional(&mut args, [(gender.map(b), "")]);
                "SAY NUMBER"
            }
            SayPhonetic {
                text,
                escape_digits,
            } => {
                args.extend([b(text), b(escape_digits)]);
                "SAY PHONETIC"
            }
            SayTime {
                unix_time,
                escape_digits,
            } => {
                args.extend([num(unix_time), b(escape_digits)]);
                "SAY TIME"
            }
            SendImage { image } => {
                args.push(b(image));
                "SEND IMAGE"
            }
            SendText { text } => {
                args.push(b(text));
                "SEND TEXT"
            }
            SetAutoHangup { seconds } => {
                args.push(num(seconds));
                "SET AUTOHANGUP"
            }
            SetCallerId { number } => {
                args.push(b(number));
                "SET CALLERID"
            }
            SetContext { context } => {
                args.push(b(context));
                "SET CONTEXT"
            }
            SetExtension { extension } => {
                args.push(b(extension));
                "SET EXTENSION"
            }
            SetMusic { on, class } => {
                args.push(b(if on { "on" } else { "off" }));
                optional(&mut args, [(class.map(b), "")]);
                "SET MUSIC"
            }
            SetPriority { priority } => {
                args.push(b(priority));
                "SET PRIORITY"
            }
            SetVariable { name, value } => {
                args.extend([b(name), b(value)]);
                "SET VARIABLE"
            }
            SpeechActivateGrammar { name } => {
                args.push(b(name));
                "SPEECH ACTIVATE GRAMMAR"
            }
            SpeechCreate { engine } => {
                args.push(b(engine));
                "SPEECH CREATE"
            }
            SpeechDeactivateGrammar { name } => {
                args.push(b(name));
                "SPEECH DEACTIVATE GRAMMAR"
            }
            SpeechDestroy => "SPEECH DESTROY",
            SpeechLoadGrammar { name, path } => {
                args.extend([b(name), b(path)]);
                "SPEECH LOAD GRAMMAR"
            }
            SpeechRecognize {
                prompt,
                timeout_ms,
                offset_samples,
            } => {
                args.extend([b(prompt), num(timeout_ms)]);
                optional(&mut args, [(offset_samples.map(num), "0")]);
                "SPEECH RECOGNIZE"
            }
            SpeechSet { name, value } => {
                args.extend([b(name), b(value)]);
                "SPEECH SET"
            }
            SpeechUnloadGrammar { name } => {
                args.push(b(name));
                "SPEECH UNLOAD GRAMMAR"
            }
            StreamFile {
                file,
                escape_digits,
                offset_samples,
            } => {
                args.extend([b(file), b(escape_digits)]);
                optional(&mut args, [(offset_samples.map(num), "0")]);
                "STREAM FILE"
            }
            TddMode { mode } => {
                args.push(b(match mode {
                    self::TddMode::On => "on",
                    self::TddMode::Off => "off",
                    self::TddMode::Mate => "mate",
                    self::TddMode::Tdd => "tdd",
                }));
                "TDD MODE"
            }
            Verbose { message, level } => {
                args.extend([b(message), num(level)]);
                "VERBOSE"
            }
            WaitForDigit { timeout_ms } => {
                args.push(timeout_ms.map_or(b("-1"), num));
                "WAIT FOR DIGIT"
            }
        };
        (keyword, args)
    }

    /// Appends the command line (with its `\n`) to `out`; on error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let (keyword, args) = self.parts();
        out.extend_from_slice(keyword.as_bytes());
        for arg in &args {
            if arg.contains(['\n', '\r']) {
                out.truncate(start);
                return Err(EncodeError::LineBreak(arg.to_string()));
            }
            out.push(b' ');
            quote(arg, out);
        }
        out.push(b'\n');
        let len = out.len() - start;
        if len > MAX_COMMAND_LEN {
            out.truncate(start);
            return Err(EncodeError::TooLong { len });
        }
        Ok(())
    }

    /// The command line without its `\n`, for logs and tests.
    pub fn to_line(&self) -> Result<String, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        out.pop();
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Writes `arg` so that Asterisk's `parse_args` reads it back as one argument: bare when it
/// has no space, tab, quote or backslash; otherwise in double quotes with `"` and `\`
/// backslash-escaped. An empty argument is `""`.
fn quote(arg: &str, out: &mut Vec<u8>) {
    let needs_quotes = arg.is_empty() || arg.contains([' ', '\t', '"', '\\']);
    if !needs_quotes {
        out.extend_from_slice(arg.as_bytes());
        return;
    }
    out.push(b'"');
    for &byte in arg.as_bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(commands: &[Command<'_>], expect: Expect) {
        let lines: Vec<String> = commands
            .iter()
            .map(|c| c.to_line().unwrap_or_else(|e| format!("error: {e}")))
            .collect();
        expect.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn quoting() {
        check(
            &[
                Command::GetVariable {
                    name: "CALLERID(num)",
                },
                Command::SetVariable {
                    name: "TARGET",
                    value: "202",
                },
                Command::SetVariable {
                    name: "NAME",
                    value: "",
                },
                Command::SetVariable {
                    name: "NAME",
                    value: "Jane \"JJ\" Caller",
                },
                Command::SetVariable {
                    name: "PATH",
                    value: "C:\\x y",
                },
                Command::SetVariable {
                    name: "TAB",
                    value: "a\tb",
                },
                Command::Verbose {
                    message: "FastAGI: TARGET set to 202",
                    level: 1,
                },
                Command::Verbose {
                    message: "two\nlines",
                    level: 1,
                },
                Command::Exec {
                    application: "Dial",
                    options: "PJSIP/201,20,tT",
                },
                Command::SetVariable {
                    name: "UTF8",
                    value: "Иван Петров",
                },
            ],
            expect![[r#"
                GET VARIABLE CALLERID(num)
                SET VARIABLE TARGET 202
                SET VARIABLE NAME ""
                SET VARIABLE NAME "Jane \"JJ\" Caller"
                SET VARIABLE PATH "C:\\x y"
                SET VARIABLE TAB "a	b"
                VERBOSE "FastAGI: TARGET set to 202" 1
                error: AGI argument contains a line break: "two\nlines"
                EXEC Dial PJSIP/201,20,tT
                SET VARIABLE UTF8 "Иван Петров""#]],
        );
    }

    #[test]
    fn optional_arguments_are_positional() {
        check(
            &[
                Command::GetData {
                    file: "beep",
                    timeout_ms: None,
                    max_digits: None,
                },
                Command::GetData {
                    file: "beep",
                    timeout_ms: None,
                    max_digits: Some(4),
                },
                Command::StreamFile {
                    file: "hello-world",
                    escape_digits: "",
                    offset_samples: None,
                },
                Command::StreamFile {
                    file: "hello-world",
                    escape_digits: "#",
                    offset_samples: Some(8000),
                },
                Command::ControlStreamFile {
                    file: "tt-monkeys",
                    escape_digits: "1",
                    skip_ms: None,
                    forward_digit: None,
                    rewind_digit: Some("4"),
                    pause_digit: None,
                    offset_ms: None,
                },
                Command::RecordFile {
                    file: "/tmp/msg",
                    format: "wav",
                    escape_digits: "#",
                    timeout_ms: None,
                    offset_samples: None,
                    beep: true,
                    silence_s: Some(3),
                },
                Command::SayDateTime {
                    unix_time: 1_795_354_640,
                    escape_digits: "",
                    format: None,
                    timezone: Some("Europe/Moscow"),
                },
                Command::WaitForDigit { timeout_ms: None },
                Command::WaitForDigit {
                    timeout_ms: Some(5000),
                },
                Command::Hangup { channel: None },
                Command::SetMusic {
                    on: true,
                    class: Some("default"),
                },
                Command::DatabaseDelTree {
                    family: "cidname",
                    key_tree: None,
                },
                Command::TddMode {
                    mode: TddMode::Mate,
                },
                Command::SpeechRecognize {
                    prompt: "beep",
                    timeout_ms: 3000,
                    offset_samples: None,
                },
            ],
            expect![[r#"
                GET DATA beep
                GET DATA beep 0 4
                STREAM FILE hello-world ""
                STREAM FILE hello-world # 8000
                CONTROL STREAM FILE tt-monkeys 1 3000 # 4
                RECORD FILE /tmp/msg wav # -1 BEEP s=3
                SAY DATETIME 1795354640 "" "ABdY 'digits/at' IMp" Europe/Moscow
                WAIT FOR DIGIT -1
                WAIT FOR DIGIT 5000
                HANGUP
                SET MUSIC on default
                DATABASE DELTREE cidname
                TDD MODE mate
                SPEECH RECOGNIZE beep 3000"#]],
        );
    }

    #[test]
    fn too_long_is_refused_and_leaves_the_buffer_alone() {
        let value = "x".repeat(MAX_COMMAND_LEN);
        let mut out = b"ANSWER\n".to_vec();
        let err = Command::SetVariable {
            name: "X",
            value: &value,
        }
        .encode(&mut out);
        assert_eq!(
            err,
            Err(EncodeError::TooLong {
                len: MAX_COMMAND_LEN + 16
            })
        );
        assert_eq!(out, b"ANSWER\n");
    }
}
