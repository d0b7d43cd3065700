//! One AGI reply line, `200 result=1 (data) endpos=1234`, and the other status codes.

/// Asterisk's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 result=...`: the command ran; what it achieved is in the result.
    Success(Success),
    /// `510 Invalid or unknown command`.
    InvalidCommand(String),
    /// `511 Command Not Permitted on a dead channel or intercept routine`: the channel hung up.
    DeadChannel(String),
    /// `520`: wrong arguments; carries the usage text Asterisk sent (the lines of a
    /// `520-` block, or the single `520 ...` line).
    Usage(String),
}

/// The parts of `200 result=<result> (<data>) endpos=<offset>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The text after `result=`: usually a number (`1`, `0`, `-1`, a digit's ASCII code),
    /// for GET DATA the digits pressed (possibly empty or with a leading zero).
    pub result: String,
    /// The text in parentheses (a variable's value, `timeout`, `dtmf`), parentheses removed;
    /// other trailing text as is.
    pub data: Option<String>,
    /// `endpos=`: where playback or recording stopped, in samples.
    pub endpos: Option<u64>,
}

impl Success {
    /// The result as a number, when it is one.
    pub fn code(&self) -> Option<i64> {
        self.result.parse().ok()
    }

    /// The result is `-1`: Asterisk's failure or hangup indication.
    pub fn failed(&self) -> bool {
        self.code() == Some(-1)
    }

    /// Parses what follows `200 `; `None` when there is no `result=`.
    pub(crate) fn parse(rest: &str) -> Option<Success> {
        let rest = rest.strip_prefix("result=")?;
        let (result, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut tail = tail.trim();
        let mut endpos = None;
        if let Some((before, pos)) = tail.rsplit_once("endpos=") {
            if let Ok(pos) = pos.parse() {
                endpos = Some(pos);
                tail = before.trim_end();
            }
        }
        let data = match tail.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            Some(inner) => Some(inner.to_owned()),
            None => (!tail.is_empty()).then(|| tail.to_owned()),
        };
        Some(Success {
            result: result.to_owned(),
            data,
            endpos,
        })
    }
}

impl Reply {
    /// The `200` reply, if the command ran.
    pub fn success(&self) -> Option<&Success> {
        match self {
            Reply::Success(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Success(s) => {
                write!(f, "200 result={}", s.result)?;
                if let Some(d) = &s.data {
                    write!(f, " ({d})")?;
                }
                if let Some(p) = s.endpos {
                    write!(f, " endpos={p}")?;
                }
                Ok(())
            }
            Reply::InvalidCommand(t) => write!(f, "510 {t}"),
            Reply::DeadChannel(t) => write!(f, "511 {t}"),
            Reply::Usage(t) => write!(f, "520 {t}"),
        }
    }
}
