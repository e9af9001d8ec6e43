//! The value parser of every argument that names a provider (`--provider`, `sbx auth login NAME`).
//!
//! The names come from the provider registry, so shell completion offers exactly the registered
//! providers and an unknown name is refused while the arguments are parsed, with the closest name and
//! the valid ones (the same words as [`sbx_providers::registry::UnknownProvider`]).

use std::ffi::OsStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Arg, Command};
use sbx_providers::registry;

/// Which providers an argument accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderArg {
    /// Every registered provider.
    Any,
    /// Only the providers that take an API key (`sbx auth login|logout`).
    Keyed,
}

impl ProviderArg {
    fn names(self) -> Vec<&'static str> {
        match self {
            Self::Any => registry::names(),
            Self::Keyed => crate::auth::PROVIDERS.iter().map(|p| p.provider).collect(),
        }
    }

    fn check(self, name: &str) -> Result<&'static str, String> {
        let known = registry::get(name).map_err(|e| e.to_string())?;
        match self {
            Self::Any => Ok(known.name),
            Self::Keyed if self.names().contains(&known.name) => Ok(known.name),
            Self::Keyed => Err(format!("`{name}` takes no API key; providers with keys: {}", self.names().join(", "))),
        }
    }
}

impl TypedValueParser for ProviderArg {
    type Value = String;

    fn parse_ref(&self, cmd: &Command, _arg: Option<&Arg>, value: &OsStr) -> Result<String, clap::Error> {
        let Some(name) = value.to_str() else {
            return Err(clap::Error::new(ErrorKind::InvalidUtf8).with_cmd(cmd));
        };
        // The message names the provider and the valid ones: the same words as `sbx.yaml`'s check.
        self.check(name).map(str::to_owned).map_err(|why| clap::Error::raw(ErrorKind::InvalidValue, format!("{why}\n")).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let summary = |name: &str| registry::get(name).map(|p| p.summary).unwrap_or_default();
        Some(Box::new(self.names().into_iter().map(move |n| PossibleValue::new(n).help(summary(n)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_registry_and_unknown_ones_are_refused_with_a_suggestion() {
        assert_eq!(ProviderArg::Any.names(), registry::names());
        assert_eq!(ProviderArg::Any.check("docker"), Ok("docker"));
        let err = ProviderArg::Any.check("dokcer").unwrap_err();
        assert!(err.contains("did you mean `docker`?") && err.contains("valid providers: local, docker"), "{err}");
        assert_eq!(ProviderArg::Keyed.check("e2b"), Ok("e2b"));
        assert!(ProviderArg::Keyed.check("local").unwrap_err().contains("takes no API key"));
        let offered: Vec<String> = ProviderArg::Keyed.possible_values().unwrap().map(|v| v.get_name().to_owned()).collect();
        assert!(offered.contains(&"modal".to_owned()) && !offered.contains(&"docker".to_owned()), "{offered:?}");
    }
}
