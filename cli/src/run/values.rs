//! Validated value types of `sbx.yaml`: each parses when the file is loaded (so a bad value is an
//! error with its file:line:column, never a silent default later), serialises back to the text the
//! user wrote, and describes itself in the JSON Schema.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

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
            if n >= m && n.is_multiple_of(m) {
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

/// A duration: `90s`, `30m`, `2h`, `1d`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration: use e.g. 90s, 30m, 2h or 1d");
        let t = s.trim();
        let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(|secs| Span(Duration::from_secs(secs))).ok_or_else(bad)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        for (unit, m) in [("d", 86400), ("h", 3600), ("m", 60)] {
            if s >= m && s.is_multiple_of(m) {
                return write!(f, "{}{unit}", s / m);
            }
        }
        write!(f, "{s}s")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Int(n) => Ok(Span(Duration::from_secs(n))),
            Scalar::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: seconds, or a number with a unit s, m, h, d, e.g. 90s, 30m, 2h.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9]+\\s*[smhd]?\\s*$"}
            ]
        })
    }
}

/// A closed set of names in `sbx.yaml`, each with its spelling in the file.
pub trait Choice: Sized + Copy + 'static {
    /// Every value with its name.
    const ALL: &'static [(&'static str, Self)];

    /// The name as written in the file.
    fn as_str(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL.iter().find(|(_, v)| *v == self).map(|(n, _)| *n).unwrap_or_default()
    }

    /// Parses a name; the error names the valid ones and the closest.
    fn parse(what: &str, s: &str) -> Result<Self, String> {
        if let Some((_, v)) = Self::ALL.iter().find(|(n, _)| *n == s) {
            return Ok(*v);
        }
        let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
        Err(unknown(what, s, &names))
    }
}

/// "unknown provider `dokcer`; did you mean `docker`? (valid: local, docker, …)".
pub fn unknown(what: &str, got: &str, valid: &[&str]) -> String {
    let best = valid.iter().map(|c| (strsim::damerau_levenshtein(got, c), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 3)).min();
    match best {
        Some((_, c)) => format!("unknown {what} `{got}`; did you mean `{c}`? (valid: {})", valid.join(", ")),
        None => format!("unknown {what} `{got}` (valid: {})", valid.join(", ")),
    }
}

/// Implements Deserialize, Serialize and JsonSchema for a [`Choice`] from its names.
macro_rules! choice {
    ($ty:ident, $what:literal, $doc:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$ty as Choice>::parse($what, &s).map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let names: Vec<&str> = <$ty as Choice>::ALL.iter().map(|(n, _)| *n).collect();
                json_schema!({"description": $doc, "type": "string", "enum": names})
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The provider's usual network.
    #[default]
    Bridge,
    /// No network (the runtime is reached another way, e.g. a Unix socket).
    None,
}

impl Choice for NetworkMode {
    const ALL: &'static [(&'static str, Self)] = &[("bridge", Self::Bridge), ("none", Self::None)];
}
choice!(NetworkMode, "network mode", "`bridge` (the provider's usual network) or `none`.");

/// A provider `sbx run` can use: a name in the provider registry (`sbx providers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderName(&'static sbx_providers::registry::ProviderInfo);

impl ProviderName {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    /// Parses a registered name; the error names the valid ones and the closest.
    pub fn parse(what: &str, s: &str) -> Result<Self, String> {
        sbx_providers::registry::get(s).map(Self).map_err(|_| unknown(what, s, &sbx_providers::registry::names()))
    }
}

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse("provider", &s).map_err(serde::de::Error::custom)
    }
}
impl Serialize for ProviderName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl JsonSchema for ProviderName {
    fn schema_name() -> Cow<'static, str> {
        "ProviderName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names = sbx_providers::registry::names();
        let doc = format!(
            "Where sandboxes are made: {}.",
            match names.split_last() {
                Some((last, rest)) if !rest.is_empty() =>
                    format!("{} or `{last}`", rest.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                _ => names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            }
        );
        json_schema!({"description": doc, "type": "string", "enum": names})
    }
}
impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An agent the runtime runs sessions of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentName {
    Claude,
    Codex,
    Mock,
    /// The ACP presets (docs/acp.md): the runtime drives them through its ACP adapter.
    Vibe,
    Gemini,
    Opencode,
    Openhands,
}

impl Choice for AgentName {
    const ALL: &'static [(&'static str, Self)] = &[
        ("claude", Self::Claude),
        ("codex", Self::Codex),
        ("mock", Self::Mock),
        ("vibe", Self::Vibe),
        ("gemini", Self::Gemini),
        ("opencode", Self::Opencode),
        ("openhands", Self::Openhands),
    ];
}
choice!(
    AgentName,
    "agent",
    "The coding agent: `claude`, `codex`, `mock` (built in, no LLM), or an ACP agent: `vibe`, `gemini`, `opencode`, `openhands` (in the image; docs/acp.md)."
);

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

    #[test]
    fn durations_and_choices_parse() {
        assert_eq!("90s".parse::<Span>().unwrap().0, Duration::from_secs(90));
        assert_eq!("2h".parse::<Span>().unwrap().to_string(), "2h");
        assert!("2x".parse::<Span>().is_err() && "".parse::<Span>().is_err());
        assert_eq!(<NetworkMode as Choice>::parse("network mode", "none"), Ok(NetworkMode::None));
        let e = <NetworkMode as Choice>::parse("network mode", "nnone").unwrap_err();
        assert_eq!(e, "unknown network mode `nnone`; did you mean `none`? (valid: bridge, none)");
        assert_eq!(ProviderName::parse("provider", "docker").unwrap().as_str(), "docker");
        assert_eq!(ProviderName::parse("provider", "dokcer").unwrap_err(), "unknown provider `dokcer`; did you mean `docker`? (valid: local, docker, e2b, daytona, vercel, ssh, modal)");
    }
}
