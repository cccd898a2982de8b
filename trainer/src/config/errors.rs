//! Turns serde_norway's deserialization errors into `Section.key.sub: what was expected`
//! (dotted paths with list indices as `.N`, the spelling `-o` uses).

use serde_norway::Error;

/// A deserialization error, split into where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    /// Dotted key path (`Optimizer.momentumm`, `DataLoader.Train.dataset.transform.0`); empty
    /// for the top level.
    pub path: String,
    pub message: String,
    /// 1-based (line, column) in the text that was deserialized.
    pub location: Option<(usize, usize)>,
}

impl KeyError {
    pub fn from_yaml(err: &Error) -> Self {
        let mut text = err.to_string();
        let location = err.location().map(|l| (l.line(), l.column()));
        if let Some((line, col)) = location {
            let suffix = format!(" at line {line} column {col}");
            if let Some(t) = text.strip_suffix(&suffix) {
                text = t.to_string();
            }
        }
        let (mut path, mut message) = match text.split_once(": ") {
            Some((p, m)) if is_path(p) => (dotted(p), m.to_string()),
            _ => (String::new(), text.clone()),
        };
        if let Some((key, rest)) = backticked(&message, "unknown field `") {
            path = join(&path, &key);
            message = match rest.strip_prefix(", ") {
                Some(expected) => format!("unknown key ({expected})"),
                None => format!("unknown key{rest}"),
            };
        } else if let Some((key, _)) = backticked(&message, "missing field `") {
            path = join(&path, &key);
            message = "missing (a required key)".to_string();
        }
        Self {
            path,
            message: plain_types(&message),
            location,
        }
    }

    /// `path: message` (the path omitted at the top level).
    pub fn describe(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

/// `prefix NAME` + `` ` `` + rest → (NAME, rest).
fn backticked(message: &str, prefix: &str) -> Option<(String, String)> {
    let tail = message.strip_prefix(prefix)?;
    let (key, rest) = tail.split_once('`')?;
    Some((key.to_string(), rest.to_string()))
}

fn is_path(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains(['`', '"', '\''])
}

/// `a.b[0].c` → `a.b.0.c`.
fn dotted(p: &str) -> String {
    p.replace('[', ".").replace(']', "")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Rust type names in "expected ..." as words.
fn plain_types(message: &str) -> String {
    const NAMES: [(&str, &str); 8] = [
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a string", "expected a string"),
        ("expected a boolean", "expected a boolean (true or false)"),
        ("expected path string", "expected a path"),
    ];
    let mut message = message.replace("invalid type: unit value", "invalid type: null");
    if let Some(i) = message.find(", expected struct ") {
        message.truncate(i);
        message.push_str(", expected a mapping");
    }
    for (from, to) in NAMES {
        if let Some(head) = message.strip_suffix(from) {
            return format!("{head}{to}");
        }
    }
    message
}
