//! Small serde helpers for PASSL's YAML idioms: `{ToTensor: null}` (an operator without
//! arguments), `{RandomHorizontalFlip: null}` (an operator with all-default arguments) and
//! Python's `None` inside lists (`input_shape: [None, 3, 224, 224]`).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The arguments of an operator that takes none: `null` or `{}` in YAML, written as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoArgs;

impl Serialize for NoArgs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for NoArgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoArgs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null or an empty mapping (this operator takes no arguments)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NoArgs, E> {
                Ok(NoArgs)
            }
            fn visit_none<E: de::Error>(self) -> Result<NoArgs, E> {
                Ok(NoArgs)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoArgs, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoArgs),
                    Some(key) => {
                        let _ = map.next_value::<IgnoredAny>()?;
                        Err(de::Error::custom(format_args!(
                            "unknown field `{key}`, this operator takes no arguments"
                        )))
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `null` as the type's default (PASSL passes `{}` for an operator written `Op: null`).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A list of integers where `null` or Python's `None` stands for "any" (an unknown dimension).
pub mod dims {
    use super::*;

    /// One dimension: an integer, `null` or `None`.
    struct Dim(Option<i64>);

    impl<'de> Deserialize<'de> for Dim {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Dim;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an integer, null or None")
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dim, E> {
                    Ok(Dim(Some(v)))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dim, E> {
                    i64::try_from(v)
                        .map(|v| Dim(Some(v)))
                        .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Dim, E> {
                    Ok(Dim(None))
                }
                fn visit_none<E: de::Error>(self) -> Result<Dim, E> {
                    Ok(Dim(None))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Dim, E> {
                    if v == "None" {
                        Ok(Dim(None))
                    } else {
                        Err(E::invalid_value(de::Unexpected::Str(v), &self))
                    }
                }
            }
            d.deserialize_any(V)
        }
    }

    pub fn serialize<S: Serializer>(v: &[Option<i64>], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<i64>>, D::Error> {
        Ok(Vec::<Dim>::deserialize(d)?
            .into_iter()
            .map(|x| x.0)
            .collect())
    }
}
