//! A snapshot of the process environment, taken once at start; everything after reads this map,
//! so every rule that reads a variable is a pure function tested without touching the process.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::{Result, bail};

/// Values that are not UTF-8 are kept, so that reading one gives an error naming the variable
/// instead of pretending it is unset.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<OsString, OsString>);

impl Env {
    pub fn from_process() -> Self {
        Env(std::env::vars_os().collect())
    }

    pub fn get(&self, name: &str) -> Result<Option<&str>> {
        match self.0.get(std::ffi::OsStr::new(name)) {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some(s) => Ok(Some(s)),
                None => bail!("{name}: is not valid UTF-8"),
            },
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(std::ffi::OsStr::new(name))
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}
