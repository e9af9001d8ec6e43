//! Validated value types of `sbx.yaml`: each parses when the file is loaded (so a bad value is an
//! error with its file:line:column, never a silent default later), serialises back to the text the
//! user wrote, and describes itself in the JSON Schema.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes: `512`, `64k`, `512m`, `2g` (binary units: k = 1024; an optional `b`/`ib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a size: use a number of bytes or one with a unit, e.g. 512k, 512m, 2g");
        let lower = s.trim().to_ascii_lowercase();
        let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
        let split = body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len());
        let (num, unit) = body.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(Size).ok_or_else(bad)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("t", 1u64 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
            if n >= m && n % m == 0 {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}")
    }
}

/// A string or a number in YAML (`memory: 1024` and `memory: 1g` are both fine).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Int(n) => Ok(Size(n)),
            Scalar::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: bytes, or a number with a unit k, m, g, t (binary; `b`/`ib` may follow), e.g. 512m, 2g.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9]+\\s*([kKmMgGtT]([iI]?[bB])?|[bB])?\\s*$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        assert_eq!("512m".parse::<Size>().unwrap().bytes(), 512 << 20);
        assert_eq!("2G".parse::<Size>().unwrap().bytes(), 2 << 30);
        assert_eq!("64KiB".parse::<Size>().unwrap().bytes(), 64 << 10);
        assert_eq!("100".parse::<Size>().unwrap().bytes(), 100);
        assert_eq!("2g".parse::<Size>().unwrap().to_string(), "2g");
        for bad in ["2x", "", "m", "1.5g", "-1", "99999999999t"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
