//! A small Asterisk dialplan builder: contexts, includes, extensions, priorities with labels,
//! `same =>` lines and application calls whose literal arguments are escaped, rendered in the
//! style of a hand-written `extensions.conf`.
//!
//! Arguments come in two kinds so that escaping is never guessed: [`Arg::Lit`] is data (a path,
//! a URL from the config) and is escaped; [`Arg::Expr`] is dialplan written in this crate
//! (`${EXTEN}`, `$["${X}" != ""]`) and is emitted as written.

use std::fmt::{self, Write as _};

/// Why a value cannot be put into the dialplan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialplanError {
    #[error("{what} {value:?}: only letters, digits, '-' and '_' are allowed")]
    BadName { what: &'static str, value: String },
    #[error("{value:?}: a line break or control character cannot be part of the dialplan")]
    Control { value: String },
    #[error("{value:?}: '${{' and '$[' would be evaluated by Asterisk; not allowed in a literal")]
    Evaluated { value: String },
    #[error("{0}")]
    Unsafe(&'static str),
}

/// One application argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Data: escaped so Asterisk reads back exactly this text.
    Lit(String),
    /// Dialplan syntax written in this crate: emitted as is.
    Expr(&'static str),
    /// Dialplan syntax assembled from checked parts (see [`Arg::goto`]).
    Built(String),
}

impl Arg {
    /// Checks a literal so that rendering cannot fail later.
    pub fn lit(value: impl Into<String>) -> Result<Arg, DialplanError> {
        let value = value.into();
        if value.chars().any(char::is_control) {
            return Err(DialplanError::Control { value });
        }
        if value.contains("${") || value.contains("$[") {
            return Err(DialplanError::Evaluated { value });
        }
        Ok(Arg::Lit(value))
    }

    /// `context,exten,priority(args)`: a Gosub/hangup-handler location.
    pub fn location(context: &str, exten: &str, args: &[Arg]) -> Result<Arg, DialplanError> {
        check_name("context", context)?;
        let mut out = format!("{context},{exten},1");
        if !args.is_empty() {
            out.push('(');
            write_args(&mut out, args);
            out.push(')');
        }
        Ok(Arg::Built(out))
    }

    /// One argument made of several parts (`Set(DIR=<literal>)`, `<literal>/${FILE}`).
    pub fn join(parts: &[Arg]) -> Arg {
        let mut out = String::new();
        for part in parts {
            part.write(&mut out);
        }
        Arg::Built(out)
    }

    fn write(&self, out: &mut String) {
        match self {
            // Backslash escapes the characters the config parser and the argument splitter
            // treat specially: ';' (comment), ',' and '|' (separators), quotes, parentheses
            // (which would unbalance the application's argument list) and '\' itself.
            Arg::Lit(value) => {
                for c in value.chars() {
                    if matches!(c, '\\' | ';' | ',' | '|' | '"' | '(' | ')') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            Arg::Expr(text) => out.push_str(text),
            Arg::Built(text) => out.push_str(text),
        }
    }
}

fn write_args(out: &mut String, args: &[Arg]) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        arg.write(out);
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), DialplanError> {
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DialplanError::BadName {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// One priority: an application call, optionally labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    label: Option<&'static str>,
    app: &'static str,
    args: Vec<Arg>,
}

/// An application call (`app("Set", [..])`).
pub fn app(app: &'static str, args: impl IntoIterator<Item = Arg>) -> Step {
    Step {
        label: None,
        app,
        args: args.into_iter().collect(),
    }
}

impl Step {
    /// Names this priority (a `Goto`/`GotoIf` target).
    pub fn label(mut self, label: &'static str) -> Step {
        self.label = Some(label);
        self
    }
}

/// An extension: a pattern and its priorities, 1, n, n, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pattern: &'static str,
    steps: Vec<Step>,
}

/// An extension with these steps.
pub fn exten(pattern: &'static str, steps: impl IntoIterator<Item = Step>) -> Extension {
    Extension {
        pattern,
        steps: steps.into_iter().collect(),
    }
}

/// A `[context]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    name: &'static str,
    comment: Vec<String>,
    includes: Vec<&'static str>,
    extensions: Vec<Extension>,
}

impl Context {
    pub fn new(name: &'static str) -> Context {
        Context {
            name,
            comment: Vec::new(),
            includes: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// A comment line under the header (why the context exists).
    pub fn comment(mut self, line: impl Into<String>) -> Context {
        self.comment.push(line.into());
        self
    }

    pub fn include(mut self, context: &'static str) -> Context {
        self.includes.push(context);
        self
    }

    pub fn exten(mut self, extension: Extension) -> Context {
        self.extensions.push(extension);
        self
    }
}

/// A whole `.conf` file: a header comment and contexts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialplan {
    pub header: Vec<String>,
    pub contexts: Vec<Context>,
}

impl fmt::Display for Dialplan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for line in &self.header {
            comment(&mut out, line);
        }
        for context in &self.contexts {
            let _ = writeln!(out, "\n[{}]", context.name);
            for line in &context.comment {
                comment(&mut out, line);
            }
            for include in &context.includes {
                let _ = writeln!(out, "include => {include}");
            }
            for extension in &context.extensions {
                for (i, step) in extension.steps.iter().enumerate() {
                    if i == 0 {
                        let _ = write!(out, "exten => {},1", extension.pattern);
                    } else {
                        out.push_str(" same => n");
                    }
                    if let Some(label) = step.label {
                        let _ = write!(out, "({label})");
                    }
                    let _ = write!(out, ",{}(", step.app);
                    write_args(&mut out, &step.args);
                    out.push_str(")\n");
                }
            }
        }
        f.write_str(&out)
    }
}

fn comment(out: &mut String, line: &str) {
    if line.is_empty() {
        out.push_str(";\n");
    } else {
        let _ = writeln!(out, "; {line}");
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn renders_extensions_conf_style_with_escaped_literals() {
        let plan = Dialplan {
            header: vec!["generated".into()],
            contexts: vec![Context::new("from-pstn-custom")
                .comment("inbound hook")
                .include("other")
                .exten(exten(
                    "_X.",
                    [
                        app("NoOp", [Arg::Expr("call to ${EXTEN}")]),
                        app(
                            "Gosub",
                            [Arg::location("sub", "s", &[Arg::Expr("${EXTEN}")]).unwrap()],
                        ),
                        app(
                            "Set",
                            [Arg::join(&[
                                Arg::Expr("DIR="),
                                Arg::lit("/rec;a,b(c)\\d\"e|").unwrap(),
                            ])],
                        )
                        .label("rec"),
                        app("Hangup", []),
                    ],
                ))],
        };
        expect![[r#"
            ; generated

            [from-pstn-custom]
            ; inbound hook
            include => other
            exten => _X.,1,NoOp(call to ${EXTEN})
             same => n,Gosub(sub,s,1(${EXTEN}))
             same => n(rec),Set(DIR=/rec\;a\,b\(c\)\\d\"e\|)
             same => n,Hangup()
        "#]]
        .assert_eq(&plan.to_string());
    }

    #[test]
    fn refuses_what_cannot_be_a_literal_or_a_name() {
        let errors: Vec<String> = [
            Arg::lit("a\nb").map(|_| ()),
            Arg::lit("${SHELL(rm -rf /)}").map(|_| ()),
            Arg::lit("$[1+1]").map(|_| ()),
            Arg::location("bad context", "s", &[]).map(|_| ()),
        ]
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
        expect![[r#"
            "a\nb": a line break or control character cannot be part of the dialplan
            "${SHELL(rm -rf /)}": '${' and '$[' would be evaluated by Asterisk; not allowed in a literal
            "$[1+1]": '${' and '$[' would be evaluated by Asterisk; not allowed in a literal
            context "bad context": only letters, digits, '-' and '_' are allowed"#]]
        .assert_eq(&errors.join("\n"));
    }
}
