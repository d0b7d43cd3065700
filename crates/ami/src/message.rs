//! One AMI message (event, response or action): ordered `Key: Value` fields in one buffer.

use std::fmt;
use std::ops::Range;

/// An AMI message: the fields in wire order, repeated keys kept (`Output:`, `ChanVariable:`).
///
/// Why one `String` plus offsets: a busy PBX sends ~200k events/s at peak, most of them
/// `VarSet`/`Newexten` with 15+ fields. A decoded message keeps its wire text as is (one
/// copy) and the fields are ranges into it: two allocations per message instead of two per
/// field, and no per-field copying.
#[derive(Clone, Default)]
pub struct Message {
    text: String,
    fields: Vec<(Range<u32>, Range<u32>)>,
}

impl Message {
    /// An empty message, to be filled with [`Message::push`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty message with room for `text_len` bytes of keys and values and `fields`
    /// fields: a decoder that sizes it from the wire text allocates once per buffer.
    pub fn with_capacity(text_len: usize, fields: usize) -> Self {
        Message {
            text: String::with_capacity(text_len),
            fields: Vec::with_capacity(fields),
        }
    }

    /// Builds a message from `(key, value)` pairs, in order.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut m = Self::new();
        for (k, v) in pairs {
            m.push(k, v);
        }
        m
    }

    /// Appends a field; keys may repeat.
    pub fn push(&mut self, key: &str, value: &str) {
        let k0 = self.text.len() as u32;
        self.text.push_str(key);
        let k1 = self.text.len() as u32;
        self.text.push_str(value);
        let v1 = self.text.len() as u32;
        self.fields.push((k0..k1, k1..v1));
    }

    /// Parses the wire text of one message (lines `Key: Value`, CRLF or LF, no blank line):
    /// the text is copied once and the fields point into it. A line without a colon is kept
    /// as the value of an empty key rather than lost.
    pub(crate) fn from_wire(wire: &str) -> Message {
        let bytes = wire.as_bytes();
        // Room for a VarSet/Newexten (18-19 fields) without a second pass to count lines.
        let mut fields = Vec::with_capacity(20);
        let mut start = 0;
        while start < bytes.len() {
            let nl = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            let end = if nl > start && bytes[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > start {
                let line = &bytes[start..end];
                let (key_end, value_start) = match memchr::memchr(b':', line) {
                    Some(colon) => {
                        let v0 = start + colon + 1;
                        (
                            start + colon,
                            v0 + usize::from(v0 < end && bytes[v0] == b' '),
                        )
                    }
                    None => (start, start),
                };
                // Offsets fit u32: the decoder bounds a message far below 4 GiB.
                let r = |a: usize, b: usize| a as u32..b as u32;
                fields.push((r(start, key_end), r(value_start, end)));
            }
            start = nl + 1;
        }
        Message {
            text: wire.to_owned(),
            fields,
        }
    }

    /// The first value of `key` (AMI keys are case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// The last value of `key`, searching from the end: the cheap way to the fields Asterisk
    /// appends after the 14-field channel block (`VarSet`'s `Variable`/`Value`, `Newexten`'s
    /// `Application`/`AppData`), which are most of a busy PBX's events.
    pub fn get_last(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| self.slice(k).eq_ignore_ascii_case(key))
            .map(|(_, v)| self.slice(v))
    }

    fn slice(&self, r: &Range<u32>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }

    /// Every value of `key`, in order (for `Output:`, `ChanVariable:` and the like).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// All fields in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|(k, v)| {
            (
                &self.text[k.start as usize..k.end as usize],
                &self.text[v.start as usize..v.end as usize],
            )
        })
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the message has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Event:` value, if this is an event.
    pub fn event(&self) -> Option<&str> {
        self.first_key_is("Event")
    }

    /// `Response:` value, if this is a response.
    pub fn response(&self) -> Option<&str> {
        self.first_key_is("Response")
    }

    /// `Action:` value, if this is an action.
    pub fn action(&self) -> Option<&str> {
        self.first_key_is("Action")
    }

    /// `ActionID:` value.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    // Asterisk always puts the message kind first; looking only there keeps a
    // `Response`-named variable in a VarSet from being taken for a response.
    fn first_key_is(&self, key: &str) -> Option<&str> {
        self.iter()
            .next()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Encodes the message in AMI wire format (`Key: Value\r\n` ... `\r\n`).
    ///
    /// A key or value can never end its line early: AMI has no escape for line breaks, so a
    /// CR or LF inside one is sent as a space. Without this, a value taken from a request
    /// (a caller name, a variable) could add fields or whole actions of its own.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn put(out: &mut Vec<u8>, text: &str) {
            let start = out.len();
            out.extend_from_slice(text.as_bytes());
            if memchr::memchr2(b'\r', b'\n', text.as_bytes()).is_some() {
                for b in &mut out[start..] {
                    if matches!(*b, b'\r' | b'\n') {
                        *b = b' ';
                    }
                }
            }
        }
        for (k, v) in self.iter() {
            put(out, k);
            out.extend_from_slice(b": ");
            put(out, v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The message as a JSON object; repeated keys become arrays.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.iter() {
            match map.get_mut(k) {
                None => {
                    map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
                }
                Some(serde_json::Value::Array(a)) => a.push(v.into()),
                Some(prev) => {
                    let first = prev.take();
                    *prev = serde_json::Value::Array(vec![first, v.into()]);
                }
            }
        }
        serde_json::Value::Object(map)
    }
}

/// Two messages are equal when their fields are: the same fields decoded from CRLF and from
/// LF-only text, or built with [`Message::push`], compare equal.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(k, v)| format!("{k}: {v}")))
            .finish()
    }
}
