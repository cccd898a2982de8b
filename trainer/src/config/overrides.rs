//! `-o Section.key.sub=value` overrides, applied to the parsed YAML before it is typed.
//!
//! - Exactly one `=`; the key is split on `.`; on a list an element must be an index
//!   (`DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=224`), which must exist.
//! - Missing mappings on the way are created (and a `null` becomes a mapping), so an
//!   override can set an optional key the YAML leaves out (`Global.max_train_step=201`,
//!   `Global.flags.FLAGS_cudnn_deterministic=1`). Whether the key exists in the schema is
//!   checked afterwards, when the whole document is deserialized strictly.
//! - The value is read as a YAML flow value: `10`, `0.01`, `true`, `null`, `[1, 4]`,
//!   `{size: 224}`, or a plain string. Python's `None` (PASSL's `eval`) also means `null`.

use serde_norway::{Mapping, Value};

/// Dotted levels an override key may have (the deepest real key has 7).
pub const MAX_KEY_DEPTH: usize = 32;

/// One parsed `-o KEY=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As given on the command line.
    pub raw: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl Override {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = raw.split('=');
        let (Some(key), Some(text), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected exactly one `=` (Section.key=value)".to_string());
        };
        let key = key.trim();
        if key.is_empty() {
            return Err("the key before `=` is empty".to_string());
        }
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        // Missing levels are created, so a hostile key would build a document so deep that
        // re-serializing it costs memory quadratic in its depth (and recursion).
        if path.len() > MAX_KEY_DEPTH {
            return Err(format!(
                "the key has {} dotted levels; configs nest at most {MAX_KEY_DEPTH}",
                path.len()
            ));
        }
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "`{key}` has an empty element (a leading, trailing or double `.`)"
            ));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "the value after `=` is empty (write null for none, '' for an empty string)"
                    .to_string(),
            );
        }
        if let Err(e) = super::check_yaml_nesting(text) {
            return Err(format!("the value: {e}"));
        }
        let value = match serde_norway::from_str::<Value>(text) {
            Ok(v) => python_none(v),
            Err(e) if text.starts_with(['[', '{', '"', '\'']) => {
                return Err(format!("the value `{text}` is not valid YAML: {e}"));
            }
            Err(_) => Value::String(text.to_string()),
        };
        Ok(Self {
            raw: raw.to_string(),
            path,
            value,
        })
    }

    /// The dotted key (`Optimizer.momentum`).
    pub fn key(&self) -> String {
        self.path.join(".")
    }

    /// Sets the value in `doc` (a mapping of sections).
    pub fn apply(&self, doc: &mut Value) -> Result<(), String> {
        let mut cur = doc;
        for (i, key) in self.path.iter().enumerate() {
            let last = i + 1 == self.path.len();
            if cur.is_null() {
                *cur = Value::Mapping(Mapping::new());
            }
            let here = || {
                if i == 0 {
                    "the top level".to_string()
                } else {
                    format!("`{}`", self.path[..i].join("."))
                }
            };
            cur = match cur {
                Value::Mapping(m) => {
                    let k = Value::String(key.clone());
                    if last {
                        m.insert(k, self.value.clone());
                        return Ok(());
                    }
                    m.entry(k).or_insert(Value::Null)
                }
                Value::Sequence(s) => {
                    let len = s.len();
                    let idx: usize = key.parse().map_err(|_| {
                        format!("{} is a list: `{key}` must be an index (0..{len})", here())
                    })?;
                    let Some(slot) = s.get_mut(idx) else {
                        return Err(format!(
                            "index {idx} is out of range: {} has {len} element(s)",
                            here()
                        ));
                    };
                    if last {
                        *slot = self.value.clone();
                        return Ok(());
                    }
                    slot
                }
                other => {
                    return Err(format!(
                        "{} is {}, not a mapping or list, so it has no `{key}`",
                        here(),
                        describe(other)
                    ));
                }
            };
        }
        Ok(())
    }
}

/// Plain `None` strings (anywhere in the value) become `null`.
fn python_none(v: Value) -> Value {
    match v {
        Value::String(s) if s == "None" => Value::Null,
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(python_none).collect()),
        Value::Mapping(m) => {
            Value::Mapping(m.into_iter().map(|(k, v)| (k, python_none(v))).collect())
        }
        other => other,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a tagged value ({})", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_key_depth_is_an_error() {
        let deep = format!("train{}=1", ".x".repeat(100_000));
        let e = Override::parse(&deep).unwrap_err();
        assert!(e.contains("dotted levels"), "{e}");
        assert!(Override::parse("Global.flags.FLAGS_cudnn_deterministic=1").is_ok());
        let nested = format!("Global.x={}", " std: [".repeat(100_000));
        let e = Override::parse(&nested).unwrap_err();
        assert!(e.contains("nested more than 256"), "{e}");
    }
}
