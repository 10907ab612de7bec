//! The fjall store's keys: short, and in the order the reads need.
//!
//! Every integer in a key is written as one length byte followed by that many bytes of the
//! number, big-endian, without leading zeros ([`Key::uint`]): 0 is `[0]`, 300 is
//! `[2, 1, 44]`. A longer number has a larger first byte, so byte order is still numeric
//! order, and the encoding is prefix-free, so a conversation's or a user's keys are exactly
//! those that start with its prefix.
//!
//! Why not fixed 8-byte integers (the layout of format 1): fjall keeps a key of up to 20
//! bytes inline in its memtable entry and compares the first 4 bytes before anything else.
//! With fixed-width ids a message key took 25 bytes (a heap allocation per key, and a
//! pointer chase per comparison in the memtable's skiplist), and its first 4 bytes were
//! `d 0 0 0` for every conversation. The store writer spent about a fifth of the server's
//! CPU searching memtables at saturation. Now a message key of a conversation between
//! users below 2^24 with fewer than 65 536 messages takes 12 bytes, an inbox entry 8, a
//! marker 13.
//!
//! | keyspace | key |
//! |---|---|
//! | `msgs` | conv ‖ uint(seq) |
//! | `inbox` | uint(user) ‖ uint(useq) (value: the message's key) |
//! | `marks` | uint(user) ‖ conv |
//! | `idem` | uint(user) ‖ client id |
//! | `pushes` | uint(user) ‖ device |
//!
//! conv is `d` ‖ uint(lo) ‖ uint(hi) or `g` ‖ uint(group).

use crate::model::{ConvId, UserId};
use crate::store::StoreError;

/// The key layout this version writes and reads, kept in `meta` under [`FORMAT_KEY`].
pub(super) const FORMAT: u32 = 2;
pub(super) const FORMAT_KEY: &[u8] = b"key_format";

/// The longest key built here without a client id: a marker key with two 8-byte ids
/// and a third (uint(user) ‖ `d` ‖ uint(lo) ‖ uint(hi)).
const MAX_KEY: usize = 28;

/// A key built on the stack (no allocation per key on the write path).
#[derive(Clone, Copy)]
pub(super) struct Key {
    buf: [u8; MAX_KEY],
    len: u8,
}

impl Key {
    fn new() -> Self {
        Key {
            buf: [0; MAX_KEY],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    /// Appends `v` as one length byte and its big-endian bytes without leading zeros.
    fn uint(mut self, v: u64) -> Self {
        let be = v.to_be_bytes();
        let skip = (v.leading_zeros() / 8) as usize;
        self.push(&[(8 - skip) as u8]);
        self.push(&be[skip..]);
        self
    }

    fn conv(mut self, conv: ConvId) -> Self {
        match conv {
            ConvId::Direct { lo, hi } => {
                self.push(b"d");
                self.uint(lo).uint(hi)
            }
            ConvId::Group(g) => {
                self.push(b"g");
                self.uint(g)
            }
        }
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

/// Reads a number written by [`Key::uint`]; returns it and the bytes after it.
pub(super) fn take_uint(b: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let bad = || StoreError::Corrupt("bad integer in key".into());
    let (&n, rest) = b.split_first().ok_or_else(bad)?;
    let n = usize::from(n);
    if n > 8 || rest.len() < n {
        return Err(bad());
    }
    let mut be = [0u8; 8];
    be[8 - n..].copy_from_slice(&rest[..n]);
    Ok((u64::from_be_bytes(be), &rest[n..]))
}

/// A conversation's prefix of its message keys.
pub(super) fn conv_key(conv: ConvId) -> Key {
    Key::new().conv(conv)
}

/// Reads a conversation prefix back; returns it and the bytes after it.
pub(super) fn split_conv(k: &[u8]) -> Result<(ConvId, &[u8]), StoreError> {
    match k.split_first() {
        Some((b'd', rest)) => {
            let (lo, rest) = take_uint(rest)?;
            let (hi, rest) = take_uint(rest)?;
            Ok((ConvId::Direct { lo, hi }, rest))
        }
        Some((b'g', rest)) => {
            let (g, rest) = take_uint(rest)?;
            Ok((ConvId::Group(g), rest))
        }
        _ => Err(StoreError::Corrupt("bad conversation key".into())),
    }
}

/// A message's key.
pub(super) fn msg_key(conv: ConvId, seq: u64) -> Key {
    conv_key(conv).uint(seq)
}

/// The conversation and seq of a message key.
pub(super) fn split_msg_key(k: &[u8]) -> Result<(ConvId, u64), StoreError> {
    let (conv, rest) = split_conv(k)?;
    let (seq, rest) = take_uint(rest)?;
    if !rest.is_empty() {
        return Err(StoreError::Corrupt("bad message key".into()));
    }
    Ok((conv, seq))
}

/// A user's prefix of their inbox, marker, idempotency and push keys.
pub(super) fn user_key(user: UserId) -> Key {
    Key::new().uint(user)
}

/// A user's inbox entry.
pub(super) fn inbox_key(user: UserId, useq: u64) -> Key {
    user_key(user).uint(useq)
}

/// The useq of an inbox key.
pub(super) fn inbox_useq(k: &[u8]) -> Result<u64, StoreError> {
    let (_, rest) = take_uint(k)?;
    Ok(take_uint(rest)?.0)
}

/// A user's markers in a conversation (which also puts it in their list).
pub(super) fn marks_key(user: UserId, conv: ConvId) -> Key {
    user_key(user).conv(conv)
}

/// The conversation of a marker key.
pub(super) fn marks_conv(k: &[u8]) -> Result<ConvId, StoreError> {
    let (_, rest) = take_uint(k)?;
    Ok(split_conv(rest)?.0)
}

/// The idempotency record of a user's client id.
pub(super) fn idem_key(user: UserId, id: &str) -> Vec<u8> {
    user_and_name(user, id)
}

/// A user's push registration for one device.
pub(super) fn push_key(user: UserId, device: &str) -> Vec<u8> {
    user_and_name(user, device)
}

/// The user's prefix followed by a name of any length (a client id, a device).
fn user_and_name(user: UserId, name: &str) -> Vec<u8> {
    let mut k = user_key(user).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [u64; 12] = [
        0,
        1,
        255,
        256,
        65_535,
        65_536,
        (1 << 24) - 1,
        1 << 24,
        u32::MAX as u64,
        1 << 40,
        u64::MAX - 1,
        u64::MAX,
    ];

    #[test]
    fn integers_keep_their_order_and_read_back() {
        for (i, &a) in EDGES.iter().enumerate() {
            let ka = Key::new().uint(a);
            assert_eq!(take_uint(&ka).unwrap(), (a, &[][..]));
            for &b in &EDGES[i + 1..] {
                assert!(*ka < *Key::new().uint(b), "{a} sorts before {b}");
            }
        }
        assert_eq!(*Key::new().uint(300), [2, 1, 44]);
        assert_eq!(*Key::new().uint(0), [0]);
    }

    #[test]
    fn a_conversations_messages_are_exactly_the_keys_under_its_prefix() {
        let convs = [
            ConvId::Direct { lo: 1, hi: 2 },
            ConvId::Direct { lo: 1, hi: 256 },
            ConvId::Direct { lo: 256, hi: 257 },
            ConvId::Direct {
                lo: 1,
                hi: u64::MAX,
            },
            ConvId::Group(1),
            ConvId::Group(u64::MAX),
        ];
        for &c in &convs {
            let prefix = conv_key(c);
            for &seq in &EDGES {
                let k = msg_key(c, seq);
                assert_eq!(split_msg_key(&k).unwrap(), (c, seq));
                for &other in convs.iter().filter(|&&o| o != c) {
                    assert!(
                        !msg_key(other, seq).starts_with(&prefix),
                        "{other:?} under {c:?}"
                    );
                }
            }
            for w in EDGES.windows(2) {
                assert!(*msg_key(c, w[0]) < *msg_key(c, w[1]));
            }
        }
    }

    #[test]
    fn user_keys_split_back_and_stay_short() {
        let c = ConvId::Direct { lo: 7, hi: 9_000 };
        assert_eq!(inbox_useq(&inbox_key(u64::MAX, 70_000)).unwrap(), 70_000);
        assert_eq!(marks_conv(&marks_key(12, c)).unwrap(), c);
        assert!(!inbox_key(1, 5).starts_with(&user_key(256)));
        // Inline in fjall's memtable (20 bytes or less) for ids below 2^24.
        assert!(
            msg_key(
                ConvId::Direct {
                    lo: 1 << 23,
                    hi: (1 << 24) - 1
                },
                65_535
            )
            .len()
                <= 20
        );
        assert!(marks_key((1 << 24) - 1, c).len() <= 20);
        let longest = marks_key(
            u64::MAX,
            ConvId::Direct {
                lo: u64::MAX,
                hi: u64::MAX,
            },
        );
        assert_eq!(longest.len(), MAX_KEY);
    }

    #[test]
    fn damaged_keys_are_corrupt_not_a_panic() {
        for bad in [&[][..], &[9, 1, 2], &[3, 1], b"x", b"d\x01", &[b'g', 2, 1]] {
            assert!(split_msg_key(bad).is_err(), "{bad:?}");
        }
        assert!(inbox_useq(&[1, 5]).is_err());
        assert!(marks_conv(&[1, 5, b'q']).is_err());
    }
}
