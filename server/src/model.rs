//! The identities of the protocol (users, devices, conversations, send targets, client
//! message ids) and their validation.
//!
//! Everything that arrives from the wire is parsed here into types that cannot hold an
//! invalid value, so the rest of the server never re-checks a string.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A user id: an unsigned 64-bit integer greater than zero.
pub type UserId = u64;

/// Why an identity from the wire was refused. The text goes back to the client as the
/// `message` of a `bad_request` error, so it says what was wrong in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidId(pub String);

fn invalid(msg: impl Into<String>) -> InvalidId {
    InvalidId(msg.into())
}

/// Parses a user id: a decimal integer > 0.
pub fn parse_user(s: &str) -> Result<UserId, InvalidId> {
    // Canonical decimal only: Rust's parser also takes `+7` and `007`, and one user must
    // have one spelling (the load balancer hashes a token's `sub` as text).
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    match s.parse::<u64>() {
        Ok(u) if canonical => Ok(u),
        _ => Err(invalid(format!(
            "invalid user id {s:?}: expected an integer greater than 0, in decimal without a sign or leading zeros"
        ))),
    }
}

/// A device id: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// The device id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(DeviceId(s.to_owned()))
        } else {
            Err(invalid(format!(
                "invalid device id {s:?}: expected 1-64 characters of [A-Za-z0-9_-]"
            )))
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen message id: 1–64 printable ASCII characters, unique per sending user.
/// It is the idempotency key of a send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientMsgId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if ok {
            Ok(ClientMsgId(s.to_owned()))
        } else {
            Err(invalid(
                "invalid message id: expected 1-64 printable ASCII characters",
            ))
        }
    }
}

/// A conversation: a direct chat between two distinct users (`lo < hi`) or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvId {
    /// `d:<lo>:<hi>`: the one-on-one chat of two users, `lo < hi`.
    Direct { lo: UserId, hi: UserId },
    /// `g:<group>`: a group conversation.
    Group(u64),
}

impl ConvId {
    /// The direct conversation of two users, whichever order they are given in.
    /// Fails when both are the same user: nobody messages themself.
    pub fn direct(a: UserId, b: UserId) -> Result<Self, InvalidId> {
        if a == b {
            return Err(invalid("a user cannot message themself"));
        }
        Ok(ConvId::Direct {
            lo: a.min(b),
            hi: a.max(b),
        })
    }

    /// Whether `user` is one of the two users of a direct conversation. Group membership
    /// is a store question and is answered there.
    pub fn direct_has(&self, user: UserId) -> bool {
        matches!(self, ConvId::Direct { lo, hi } if *lo == user || *hi == user)
    }

    /// The other user of a direct conversation, seen from `user`.
    pub fn direct_peer(&self, user: UserId) -> Option<UserId> {
        match *self {
            ConvId::Direct { lo, hi } if lo == user => Some(hi),
            ConvId::Direct { lo, hi } if hi == user => Some(lo),
            _ => None,
        }
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvId::Direct { lo, hi } => write!(f, "d:{lo}:{hi}"),
            ConvId::Group(g) => write!(f, "g:{g}"),
        }
    }
}

impl FromStr for ConvId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let bad = || {
            invalid(format!(
                "invalid conversation id {s:?}: expected d:<lo>:<hi> with lo < hi, or g:<group>"
            ))
        };
        if let Some(rest) = s.strip_prefix("d:") {
            let (lo, hi) = rest.split_once(':').ok_or_else(bad)?;
            let lo = parse_user(lo).map_err(|_| bad())?;
            let hi = parse_user(hi).map_err(|_| bad())?;
            if lo >= hi {
                return Err(bad());
            }
            Ok(ConvId::Direct { lo, hi })
        } else if let Some(g) = s.strip_prefix("g:") {
            Ok(ConvId::Group(parse_user(g).map_err(|_| bad())?))
        } else {
            Err(bad())
        }
    }
}

/// Where a `send` goes: a user (the direct conversation with them) or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `u:<user id>`
    User(UserId),
    /// `g:<group id>`
    Group(u64),
}

impl FromStr for Target {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let bad = || {
            invalid(format!(
                "invalid target {s:?}: expected u:<user> or g:<group>"
            ))
        };
        if let Some(u) = s.strip_prefix("u:") {
            Ok(Target::User(parse_user(u).map_err(|_| bad())?))
        } else if let Some(g) = s.strip_prefix("g:") {
            Ok(Target::Group(parse_user(g).map_err(|_| bad())?))
        } else {
            Err(bad())
        }
    }
}

/// Identities arrive in JSON as strings and are parsed while the frame or body is
/// decoded, so a frame that gets past serde holds only valid values; the parse error's
/// text becomes the `bad_request` message.
macro_rules! deserialize_from_str {
    ($($ty:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

deserialize_from_str!(ClientMsgId, ConvId, Target, DeviceId);

/// Milliseconds since the Unix epoch: the `ts` of the protocol.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_ids_round_trip_and_reject_bad_forms() {
        let d: ConvId = "d:3:7".parse().unwrap();
        assert_eq!(d, ConvId::Direct { lo: 3, hi: 7 });
        assert_eq!(d.to_string(), "d:3:7");
        assert_eq!("g:9".parse::<ConvId>().unwrap().to_string(), "g:9");
        for bad in [
            "d:7:3", "d:3:3", "d:0:3", "d:3", "x:1", "g:0", "g:-1", "", "d:1:2:3",
        ] {
            assert!(bad.parse::<ConvId>().is_err(), "{bad} accepted");
        }
        assert!(ConvId::direct(5, 5).is_err());
        assert_eq!(ConvId::direct(9, 2).unwrap().to_string(), "d:2:9");
    }

    #[test]
    fn device_and_message_ids_are_checked() {
        assert!("phone-1_A".parse::<DeviceId>().is_ok());
        assert!("".parse::<DeviceId>().is_err());
        assert!("a b".parse::<DeviceId>().is_err());
        assert!("x".repeat(65).parse::<DeviceId>().is_err());
        assert!("m 1!~".parse::<ClientMsgId>().is_ok());
        assert!("é".parse::<ClientMsgId>().is_err());
        assert!("\n".parse::<ClientMsgId>().is_err());
        assert!("x".repeat(65).parse::<ClientMsgId>().is_err());
    }

    #[test]
    fn identities_deserialize_from_json_strings() {
        let c: ConvId = serde_json::from_str(r#""d:1:2""#).unwrap();
        assert_eq!(c, ConvId::Direct { lo: 1, hi: 2 });
        let e = serde_json::from_str::<ConvId>(r#""d:2:1""#).unwrap_err();
        assert!(e.to_string().contains("invalid conversation id"), "{e}");
        assert!(serde_json::from_str::<ConvId>("12").is_err());
        let t: Target = serde_json::from_str(r#""u:4""#).unwrap();
        assert_eq!(t, Target::User(4));
        assert!(serde_json::from_str::<ClientMsgId>(r#""""#).is_err());
    }

    #[test]
    fn user_ids_have_one_spelling() {
        assert_eq!(parse_user("7").unwrap(), 7);
        assert_eq!(parse_user("18446744073709551615").unwrap(), u64::MAX);
        for bad in ["+7", "007", "0", "", "-1", "7 ", "18446744073709551616"] {
            assert!(parse_user(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["d:+1:2", "d:01:2", "g:07", "u:+4"] {
            assert!(
                bad.parse::<ConvId>().is_err() && bad.parse::<Target>().is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn targets_parse() {
        assert_eq!("u:4".parse::<Target>().unwrap(), Target::User(4));
        assert_eq!("g:4".parse::<Target>().unwrap(), Target::Group(4));
        assert!("u:0".parse::<Target>().is_err());
        assert!("4".parse::<Target>().is_err());
    }
}
