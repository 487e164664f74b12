//! Numeric ids as path elements.
//!
//! Millions of users with numeric ids would make one trie node with millions
//! of children if the id were one element (`id.prefs.09067832`). Instead the
//! id is written in base62 (alphabet `0-9A-Za-z`, the `base62` crate's
//! standard alphabet), one character per element (`id.prefs.c.2.x.M`), so
//! routing tries stay shallow and share prefixes.
//!
//! # Leading zeros and zero
//! Ids are unsigned 64-bit numbers. The decimal form may carry leading zeros
//! (`09067832` is the id 9067832); they do not change the id. The split form
//! is canonical: no leading `0` element, except the id 0 itself, which is the
//! single element `0`. [`join_id`] therefore rejects `0.c.2.x.M`, so every id
//! has exactly one split form and one routing key.

use crate::path::{Path, PathError};

/// Why an id or an id path could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("'{0}' is not a decimal id")]
    NotDecimal(String),
    #[error("id does not fit in 64 bits")]
    Overflow,
    #[error("'{0}' is not a base62 digit element")]
    NotBase62(String),
    #[error("split id has a leading zero element")]
    LeadingZero,
    #[error("split id has no elements")]
    Empty,
    #[error("path '{0}' has no id element to convert")]
    NoId(String),
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Parses a decimal id, allowing leading zeros.
pub fn parse_decimal(s: &str) -> Result<u64, IdError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotDecimal(s.to_owned()));
    }
    s.parse::<u64>().map_err(|_| IdError::Overflow)
}

/// The base62 digits of `id`, most significant first, as `.`-joined elements:
/// `9067832` gives `c.2.x.M`.
pub fn split_id(id: u64) -> String {
    let mut digits = [0u8; 11]; // 62^11 > 2^64
    let n = base62::encode_bytes(id, &mut digits).expect("11 digits hold any u64");
    let mut out = String::with_capacity(n * 2);
    for (k, d) in digits[..n].iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        out.push(*d as char);
    }
    out
}

/// The id spelled by split elements (`["c","2","x","M"]` gives 9067832).
pub fn join_id<'a>(elements: impl IntoIterator<Item = &'a str>) -> Result<u64, IdError> {
    let mut digits = String::new();
    for elem in elements {
        match elem.as_bytes() {
            [c] if c.is_ascii_alphanumeric() => {}
            _ => return Err(IdError::NotBase62(elem.to_owned())),
        }
        if digits == "0" {
            return Err(IdError::LeadingZero);
        }
        digits.push_str(elem);
    }
    if digits.is_empty() {
        return Err(IdError::Empty);
    }
    match base62::decode(&digits) {
        Ok(n) => u64::try_from(n).map_err(|_| IdError::Overflow),
        Err(base62::DecodeError::ArithmeticOverflow) => Err(IdError::Overflow),
        Err(e) => Err(IdError::NotBase62(format!("{digits}: {e}"))),
    }
}

/// The pattern suffix that addresses one user: the split id. A user's own
/// paths are `id.<kind>.<split>`, so its devices subscribe `id.*.<split>`.
pub fn user_pattern(user: u64) -> String {
    format!("id.*.{}", split_id(user))
}

/// The path of a user's stored preferences, `id.prefs.<split>`.
pub fn prefs_path(user: u64) -> Path {
    Path::parse(&format!("id.prefs.{}", split_id(user))).expect("split ids always form valid paths")
}

/// `id.<kind>.<decimal>` to `id.<kind>.<split>`: `id.prefs.09067832` gives
/// `id.prefs.c.2.x.M`. Only the third element is converted.
pub fn split_id_path(path: &str) -> Result<Path, IdError> {
    let mut parts = path.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(cat), Some(kind), Some(id)) => {
            let id = parse_decimal(id)?;
            Ok(Path::parse(&format!("{cat}.{kind}.{}", split_id(id)))?)
        }
        _ => Err(IdError::NoId(path.to_owned())),
    }
}

/// `id.<kind>.<split>` back to `id.<kind>.<decimal>`, without leading zeros:
/// `id.prefs.c.2.x.M` gives `id.prefs.9067832`.
pub fn join_id_path(path: &Path) -> Result<String, IdError> {
    let mut elems = path.elements();
    match (elems.next(), elems.next()) {
        (Some(cat), Some(kind)) => {
            let id = join_id(elems)?;
            Ok(format!("{cat}.{kind}.{id}"))
        }
        _ => Err(IdError::NoId(path.as_str().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example() {
        assert_eq!(split_id(9067832), "c.2.x.M");
        assert_eq!(
            split_id_path("id.prefs.09067832").unwrap().as_str(),
            "id.prefs.c.2.x.M"
        );
        let p = Path::parse("id.prefs.c.2.x.M").unwrap();
        assert_eq!(join_id_path(&p).unwrap(), "id.prefs.9067832");
    }

    #[test]
    fn zero_and_leading_zeros() {
        assert_eq!(split_id(0), "0");
        assert_eq!(join_id(["0"]).unwrap(), 0);
        assert_eq!(parse_decimal("0000").unwrap(), 0);
        assert_eq!(parse_decimal("007").unwrap(), 7);
        assert_eq!(join_id(["0", "7"]).unwrap_err(), IdError::LeadingZero);
        assert_eq!(split_id(61), "z");
        assert_eq!(split_id(62), "1.0");
    }

    /// The `base62` crate's standard alphabet is ours, digit for digit:
    /// `0-9`, then `A-Z`, then `a-z`.
    #[test]
    fn alphabet_order() {
        let ours = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        for (value, digit) in ours.chars().enumerate() {
            let d = digit.to_string();
            assert_eq!(split_id(value as u64), d);
            assert_eq!(join_id([d.as_str()]).unwrap(), value as u64);
        }
        assert_eq!(split_id(62 * 62 - 1), "z.z");
    }

    #[test]
    fn extremes_and_errors() {
        let s = split_id(u64::MAX);
        assert_eq!(join_id(s.split('.')).unwrap(), u64::MAX);
        assert_eq!(join_id(["z"; 11]).unwrap_err(), IdError::Overflow);
        assert_eq!(
            join_id(["ab"]).unwrap_err(),
            IdError::NotBase62("ab".into())
        );
        assert_eq!(join_id(["-"]).unwrap_err(), IdError::NotBase62("-".into()));
        assert_eq!(join_id([]).unwrap_err(), IdError::Empty);
        assert!(matches!(parse_decimal("12a"), Err(IdError::NotDecimal(_))));
        assert_eq!(
            parse_decimal("18446744073709551616").unwrap_err(),
            IdError::Overflow
        );
    }

    #[test]
    fn user_paths() {
        assert_eq!(user_pattern(9067832), "id.*.c.2.x.M");
        assert_eq!(prefs_path(9067832).as_str(), "id.prefs.c.2.x.M");
    }
}
