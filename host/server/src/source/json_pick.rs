//! Picking a few values out of a JSON document in one pass, without building the whole
//! document: each wanted value is named by a JSON pointer (RFC 6901), split into its
//! tokens once; the walk parses (and so validates) every byte, but keeps only the values
//! at those pointers. The bytes are checked as UTF-8 first: serde_json skips the strings
//! it is told to ignore without looking at their bytes, and a payload goes to browsers
//! as it came. This is the source's per-event decode: a `serde_json::Value` of the
//! whole payload costs a map and a string per field, and `Value::pointer` a string per
//! token on each lookup.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON pointer split into unescaped tokens; `None` inside: not a pointer (it does not
/// start with `/` and is not empty), so it finds nothing, as `Value::pointer` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(Option<Vec<String>>);

impl Pointer {
    pub fn parse(pointer: &str) -> Pointer {
        if pointer.is_empty() {
            return Pointer(Some(Vec::new()));
        }
        let Some(rest) = pointer.strip_prefix('/') else { return Pointer(None) };
        Pointer(Some(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()))
    }

    fn tokens(&self) -> Option<&[String]> {
        self.0.as_deref()
    }
}

/// An array index token as `Value::pointer` reads one (no sign, no leading zero).
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// The value at `tokens` below `value`.
fn below<'v>(value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    tokens.iter().try_fold(value, |v, t| match v {
        Value::Object(map) => map.get(t),
        Value::Array(items) => index(t).and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Parses `raw`, which must be one JSON object, and returns the value at each pointer
/// (`None` where there is none); `Err` when `raw` is not a JSON object.
pub fn pick(raw: &[u8], pointers: &[&Pointer]) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut found = vec![None; pointers.len()];
    let wanted: Vec<(usize, &[String])> =
        pointers.iter().enumerate().filter_map(|(i, p)| p.tokens().map(|t| (i, t))).collect();
    let text = std::str::from_utf8(raw).map_err(|e| serde::de::Error::custom(format!("not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    if wanted.iter().any(|(_, t)| t.is_empty()) {
        // A pointer to the whole document: it is needed whole.
        let value: Value = serde::Deserialize::deserialize(&mut de)?;
        de.end()?;
        if !value.is_object() {
            return Err(serde::de::Error::custom("not a JSON object"));
        }
        for (i, tokens) in wanted {
            found[i] = below(&value, tokens).cloned();
        }
        return Ok(found);
    }
    Walk { wanted: &wanted, depth: 0, found: &mut found, object_only: true }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The walk at one level of the document: the pointers that lead here, at `depth`.
struct Walk<'a, 'f> {
    wanted: &'a [(usize, &'a [String])],
    depth: usize,
    found: &'f mut Vec<Option<Value>>,
    /// The document itself must be an object.
    object_only: bool,
}

impl Walk<'_, '_> {
    /// The value of the member or element `token` leads to: kept whole when a pointer
    /// ends there, walked into when pointers go deeper, skipped otherwise.
    fn member<'de, A: ValueSource<'de>>(
        &mut self,
        matches: impl Fn(&str) -> bool,
        next: A,
    ) -> Result<(), A::Error> {
        let here: Vec<(usize, &[String])> =
            self.wanted.iter().filter(|(_, t)| matches(&t[self.depth])).copied().collect();
        if here.is_empty() {
            return next.skip();
        }
        if here.iter().any(|(_, t)| t.len() == self.depth + 1) {
            let value = next.value()?;
            for (i, tokens) in here {
                self.found[i] = below(&value, &tokens[self.depth + 1..]).cloned();
            }
            return Ok(());
        }
        // Only deeper pointers: what an earlier duplicate member gave them is replaced.
        for (i, _) in &here {
            self.found[*i] = None;
        }
        next.walk(Walk { wanted: &here, depth: self.depth + 1, found: self.found, object_only: false })
    }
}

/// The next member value or array element, read one of three ways.
trait ValueSource<'de> {
    type Error;
    fn skip(self) -> Result<(), Self::Error>;
    fn value(self) -> Result<Value, Self::Error>;
    fn walk(self, walk: Walk<'_, '_>) -> Result<(), Self::Error>;
}

struct MapValue<'m, A>(&'m mut A);

impl<'de, A: MapAccess<'de>> ValueSource<'de> for MapValue<'_, A> {
    type Error = A::Error;
    fn skip(self) -> Result<(), A::Error> {
        self.0.next_value::<IgnoredAny>().map(drop)
    }
    fn value(self) -> Result<Value, A::Error> {
        self.0.next_value()
    }
    fn walk(self, walk: Walk<'_, '_>) -> Result<(), A::Error> {
        self.0.next_value_seed(walk)
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.object_only { "a JSON object" } else { "any JSON value" })
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            self.member(|t| t == key, MapValue(&mut map))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.object_only {
            return Err(serde::de::Error::custom("not a JSON object"));
        }
        let Walk { wanted, depth, found, .. } = self;
        for i in 0usize.. {
            let here: Vec<(usize, &[String])> =
                wanted.iter().filter(|(_, t)| index(&t[depth]) == Some(i)).copied().collect();
            let more = if here.is_empty() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else if here.iter().any(|(_, t)| t.len() == depth + 1) {
                let Some(value) = seq.next_element::<Value>()? else { return Ok(()) };
                for (k, tokens) in &here {
                    found[*k] = below(&value, &tokens[depth + 1..]).cloned();
                }
                true
            } else {
                let inner = Walk { wanted: &here, depth: depth + 1, found: &mut *found, object_only: false };
                seq.next_element_seed(inner)?.is_some()
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

impl Walk<'_, '_> {
    /// A scalar where pointers wanted to go deeper: they find nothing.
    fn scalar<E: serde::de::Error>(self) -> Result<(), E> {
        if self.object_only {
            return Err(E::custom("not a JSON object"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Value::pointer` finds, for comparison.
    fn reference(raw: &str, pointers: &[&str]) -> Option<Vec<Option<Value>>> {
        let value: Value = serde_json::from_str(raw).ok().filter(Value::is_object)?;
        Some(pointers.iter().map(|p| value.pointer(p).cloned()).collect())
    }

    fn picked(raw: &str, pointers: &[&str]) -> Option<Vec<Option<Value>>> {
        let parsed: Vec<Pointer> = pointers.iter().map(|p| Pointer::parse(p)).collect();
        pick(raw.as_bytes(), &parsed.iter().collect::<Vec<_>>()).ok()
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_even_where_nothing_is_picked() {
        let key = Pointer::parse("/k");
        for raw in [
            &b"{\"k\":\"a\",\"note\":\"\xff\"}"[..],
            b"{\"k\":\"a\",\"n\":[\"\xc3\"]}",
            b"{\"\xed\xa0\x80\":1}",
        ] {
            assert!(pick(raw, &[&key]).is_err(), "{}", String::from_utf8_lossy(raw));
        }
        assert!(pick("{\"k\":\"a\",\"note\":\"é\"}".as_bytes(), &[&key]).is_ok());
    }

    #[test]
    fn picks_what_value_pointer_finds() {
        let docs = [
            r#"{"k":"a","t":5,"n":{"x":[1,{"y":"z"}]},"a/b":1,"m~n":2,"s":"\u00e9\n"}"#,
            r#"{"k":7,"k":8,"t":1.5e3,"n":{"x":"no"},"n":{"w":1}}"#,
            r#"{"n":[10,[20,30]],"t":-1,"k":null,"e":{},"f":[]}"#,
            r#"  {"k" : "spaced" , "t" : 1 }  "#,
        ];
        let pointers = [
            "/k", "/t", "/n/x/1/y", "/n/x", "/a~1b", "/m~0n", "/s", "/n/0", "/n/1/1", "/n/01", "/missing",
            "", "k", "/n/w", "/e", "/f/0",
        ];
        for doc in docs {
            for p in pointers {
                assert_eq!(picked(doc, &[p, "/t"]), reference(doc, &[p, "/t"]), "{p} in {doc}");
            }
            assert_eq!(picked(doc, &pointers), reference(doc, &pointers), "{doc}");
        }
    }

    #[test]
    fn only_json_objects_are_accepted() {
        for bad in ["[1]", "1", "\"s\"", "null", "{", "{} x", "{\"a\":}", "", "{\"a\":[1,}"] {
            assert!(picked(bad, &["/a"]).is_none(), "{bad}");
            assert!(picked(bad, &[""]).is_none(), "{bad}");
            assert_eq!(reference(bad, &["/a"]), None, "{bad}");
        }
    }
}
