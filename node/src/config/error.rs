//! [`ConfigError`] and how a span in the file becomes "file line N: [section] key = value".

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::Source;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The file is not valid TOML or not a valid config.
    #[error("{origin}{}: {message}", LineSuffix(*line))]
    Invalid {
        /// The file's name as given (or another label for text not from a file).
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// The offending key as `section.key` (e.g. `route.via`), when known.
        key: Option<String>,
        /// What is wrong, starting with the section and key.
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The key the error is about (`section.key`), when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => key.as_deref(),
        }
    }
}

struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " line {line}"),
            None => Ok(()),
        }
    }
}

impl<'a> Source<'a> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// An error about `section` `field` = `shown` at `span`.
    pub(super) fn invalid(
        &self,
        span: Range<usize>,
        section: &str,
        field: &str,
        shown: impl fmt::Display,
        why: impl fmt::Display,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line: Some(self.line_of(span.start)),
            key: Some(format!("{}.{field}", section.trim_matches(['[', ']']))),
            message: format!("{section} {field} = {shown}: {why}"),
        }
    }

    /// An error about a table as a whole (e.g. a missing key), at the line of its header.
    pub(super) fn section_error(
        &self,
        header: &str,
        key: &str,
        message: impl fmt::Display,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line: self.text.find(header).map(|offset| self.line_of(offset)),
            key: Some(key.to_owned()),
            message: message.to_string(),
        }
    }

    /// An error for a string value.
    pub(super) fn bad(
        &self,
        section: &str,
        field: &str,
        v: &Spanned<String>,
        why: impl fmt::Display,
    ) -> ConfigError {
        self.invalid(
            v.span(),
            section,
            field,
            format_args!("{:?}", v.get_ref()),
            why,
        )
    }

    /// A syntax, type or unknown-key error from `toml`, with the section it is in.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim_end();
        // A missing key of the root table (e.g. no [node]) comes with an empty span at 0 or
        // one over the whole document: it has no line.
        let span = e.span().filter(|s| {
            let root = s.start == 0 && (s.is_empty() || s.end == self.text.len());
            !(root && message.starts_with("missing field"))
        });
        let Some(span) = span else {
            return ConfigError::Invalid {
                origin: self.origin.to_owned(),
                line: None,
                key: None,
                message: message.to_owned(),
            };
        };
        let section = self.section_at(span.start);
        let key = self.key_at(span.start);
        let mut shown = String::new();
        if let Some(section) = section {
            shown.push_str(section);
            shown.push(' ');
        }
        if let Some(key) = key.filter(|k| !message.contains(&format!("`{k}`"))) {
            shown.push_str(key);
            shown.push_str(": ");
        }
        shown.push_str(message);
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line: Some(self.line_of(span.start)),
            key: key.map(|k| match section {
                Some(s) => format!("{}.{k}", s.trim_matches(['[', ']'])),
                None => k.to_owned(),
            }),
            message: shown,
        }
    }

    /// The key of the `key = value` line holding `offset`, if it is one.
    pub(super) fn key_at(&self, offset: usize) -> Option<&'a str> {
        let start = self.text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[start..].lines().next()?.trim_start();
        if line.starts_with(['[', '#']) {
            return None;
        }
        let key = line.split_once('=')?.0.trim();
        (!key.is_empty()).then_some(key)
    }

    /// The table header (`[node]`, `[[route]]`) that `offset` falls under, if any.
    pub(super) fn section_at(&self, offset: usize) -> Option<&'a str> {
        let line_end = self.text[offset.min(self.text.len())..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let upto = self.text.get(..line_end)?;
        upto.lines().rev().find_map(|line| {
            let line = line.trim_start();
            let close = if line.starts_with("[[") { "]]" } else { "]" };
            let end = line.strip_prefix('[')?.find(close)? + 1 + close.len();
            line.get(..end)
        })
    }
}
