//! Paths: where a message lives, e.g. `feeds.breaking-news.56`.
//!
//! A path is 1 to [`Limits::max_elements`] UTF-8 elements joined by `.`. No
//! element is empty, and `*` / `#` are not allowed as elements because they
//! are wildcards in patterns. The first element is the *category*, which
//! selects retention and other per-category policy.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Size limits for paths and patterns. Configurable; the defaults follow the
/// design (32 elements keeps routing tries shallow, 1 KiB keeps keys cheap to
/// index under every ancestor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Maximum number of `.`-separated elements.
    pub max_elements: usize,
    /// Maximum length in bytes of the whole path or pattern.
    pub max_bytes: usize,
}

impl Limits {
    /// Default maximum element count.
    pub const DEFAULT_MAX_ELEMENTS: usize = 32;
    /// Default maximum length in bytes.
    pub const DEFAULT_MAX_BYTES: usize = 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_elements: Self::DEFAULT_MAX_ELEMENTS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Why a string is not a valid path (or pattern). Each violation has its own
/// variant so callers can map it to a precise error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is {len} bytes, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("path has {count} elements, the limit is {max}")]
    TooManyElements { count: usize, max: usize },
    #[error("element {index} is empty")]
    EmptyElement { index: usize },
    #[error("element {index} is a wildcard ('{wildcard}'), which is only allowed in patterns")]
    Wildcard { index: usize, wildcard: char },
    #[error("element {index} contains a control character")]
    ControlCharacter { index: usize },
}

/// A validated message path. Cheap to clone is not a goal here: paths are
/// short and live inside messages that are shared behind `Arc`/`Bytes`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(String);

/// The folders above a dotted path, shortest first, the root left out:
/// `a.b.c` gives `a` and `a.b`. The embedded store indexes a message under
/// each of them (and under the path itself, in a row of its own).
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('.').map(move |(i, _)| &path[..i])
}

impl Path {
    /// Parses with the default [`Limits`].
    pub fn parse(s: &str) -> Result<Path, PathError> {
        Self::parse_with(s, &Limits::default())
    }

    /// Parses with explicit limits.
    pub fn parse_with(s: &str, limits: &Limits) -> Result<Path, PathError> {
        check_elements(s, limits, false)?;
        Ok(Path(s.to_owned()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The elements, in order.
    pub fn elements(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// The first element.
    pub fn category(&self) -> &str {
        self.0.split('.').next().unwrap_or("")
    }

    /// Number of elements.
    pub fn depth(&self) -> usize {
        self.0.split('.').count()
    }

    /// The folders above this path; see [`ancestors`].
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        ancestors(&self.0)
    }

    /// Consumes the path, returning its text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Shared validation for paths (`allow_wildcards = false`) and patterns.
pub(crate) fn check_elements(
    s: &str,
    limits: &Limits,
    allow_wildcards: bool,
) -> Result<(), PathError> {
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    if s.len() > limits.max_bytes {
        return Err(PathError::TooLong {
            len: s.len(),
            max: limits.max_bytes,
        });
    }
    let mut count = 0;
    for (index, elem) in s.split('.').enumerate() {
        count += 1;
        if elem.is_empty() {
            return Err(PathError::EmptyElement { index });
        }
        if !allow_wildcards && (elem == "*" || elem == "#") {
            return Err(PathError::Wildcard {
                index,
                wildcard: elem.chars().next().unwrap_or('*'),
            });
        }
        if elem.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter { index });
        }
    }
    if count > limits.max_elements {
        return Err(PathError::TooManyElements {
            count,
            max: limits.max_elements,
        });
    }
    Ok(())
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({:?})", self.0)
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

impl AsRef<str> for Path {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Path {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Path::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        for s in [
            "feeds",
            "feeds.breaking-news.56",
            "id.prefs.c.2.x.M",
            "ünï.cødé",
            "a b.c",
        ] {
            assert_eq!(Path::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn each_violation_has_its_error() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::Empty),
            ("a..b", PathError::EmptyElement { index: 1 }),
            (".a", PathError::EmptyElement { index: 0 }),
            ("a.", PathError::EmptyElement { index: 1 }),
            (
                "a.*.b",
                PathError::Wildcard {
                    index: 1,
                    wildcard: '*',
                },
            ),
            (
                "#",
                PathError::Wildcard {
                    index: 0,
                    wildcard: '#',
                },
            ),
            ("a.b\nc", PathError::ControlCharacter { index: 1 }),
        ];
        for (s, e) in cases {
            assert_eq!(Path::parse(s).unwrap_err(), *e, "{s:?}");
        }
        let deep = vec!["x"; 33].join(".");
        assert_eq!(
            Path::parse(&deep).unwrap_err(),
            PathError::TooManyElements { count: 33, max: 32 }
        );
        let long = "x".repeat(1025);
        assert_eq!(
            Path::parse(&long).unwrap_err(),
            PathError::TooLong {
                len: 1025,
                max: 1024
            }
        );
        // Elements that merely contain wildcard characters are literal text.
        assert!(Path::parse("a.b*.#c").is_ok());
    }

    #[test]
    fn custom_limits() {
        let limits = Limits {
            max_elements: 2,
            max_bytes: 5,
        };
        assert!(Path::parse_with("a.b", &limits).is_ok());
        assert!(matches!(
            Path::parse_with("a.b.c", &limits),
            Err(PathError::TooManyElements { .. })
        ));
        assert!(matches!(
            Path::parse_with("abcdef", &limits),
            Err(PathError::TooLong { .. })
        ));
    }

    #[test]
    fn ancestors_and_category() {
        let p = Path::parse("feeds.breaking-news.56").unwrap();
        assert_eq!(p.category(), "feeds");
        assert_eq!(p.depth(), 3);
        let v: Vec<_> = p.ancestors().collect();
        assert_eq!(v, ["feeds", "feeds.breaking-news"]);
        assert_eq!(ancestors("feeds").count(), 0);
    }
}
