//! Generators of hostile input, shared by the property tests (`hostile.rs`) and the fuzz
//! bench (`benches/fuzz.rs`, which draws from the same strategies a million times each).
//!
//! JSON is generated as text, not as `serde_json::Value`, so that it can hold what a
//! `Value` cannot: integers past u64 (`18446744073709551616`), `1e400`, lone surrogate
//! escapes (`"\ud800"`), duplicate keys, nesting thousands of levels deep and plain
//! syntax errors.

// The tests and the bench each use a different part of this module.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Number-like JSON where the protocol wants an unsigned 64-bit integer; some are not
/// valid JSON at all (`NaN`, `0x10`, `+1`, `01`).
pub const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "-0",
    "-1",
    "18446744073709551615",
    "18446744073709551614",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999999999999999",
    "1e400",
    "-1e400",
    "1E-400",
    "1.5",
    "1.0",
    "0.0",
    "1e3",
    "2e19",
    "0x10",
    "01",
    "+1",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.",
    ".5",
    "-",
];

/// String literals (JSON text) that hurt: lone surrogates, NUL, unterminated, raw
/// control characters, identities that are almost right.
pub const STRINGS: &[&str] = &[
    r#""""#,
    r#""\ud800""#,
    r#""\udfff""#,
    r#""\ud800\u0041""#,
    r#""\udc00\ud800""#,
    r#""\ud83d\ude00""#,
    r#""\u0000""#,
    r#""a\u0000b""#,
    "\"a\u{0}b\"",
    "\"tab\there\"",
    r#""\x41""#,
    r#""\u12""#,
    r#""unterminated"#,
    r#""\""#,
    r#""\uFFFF""#,
    r#""é""#,
    r#""u:2""#,
    r#""u:0""#,
    r#""u:-1""#,
    r#""u:18446744073709551616""#,
    r#""u:2\u0000""#,
    r#""g:1""#,
    r#""d:1:2""#,
    r#""d:2:1""#,
    r#""d:1:1""#,
    r#""d:0:1""#,
    r#""d:1:18446744073709551616""#,
    r#""send""#,
    r#""ping""#,
    r#""SEND""#,
    r#""send\u0000""#,
];

/// The fields the protocol's frames and bodies have, plus near misses.
pub const KEYS: &[&str] = &[
    "type",
    "id",
    "to",
    "body",
    "conv",
    "seq",
    "after",
    "limit",
    "before",
    "users",
    "user",
    "name",
    "members",
    "platform",
    "token",
    "device",
    "ref",
    "Type",
    "id\u{0}",
    "",
    "__proto__",
];

/// Integer fields of the frames.
const INT_KEYS: &[&str] = &["seq", "after", "limit", "before"];

/// A Rust string as a JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A JSON object's text from its members' texts (keys are escaped, values are taken as
/// they are, so they may be hostile).
pub fn object(fields: &[(String, String)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A string literal far past every limit: 70 000 characters.
fn absurd_string() -> impl Strategy<Value = String> {
    (select(vec!['x', 'é', '\u{0}', '"']), 70_000..70_100usize)
        .prop_map(|(c, n)| json_string(&c.to_string().repeat(n)))
}

/// One JSON scalar (as text), hostile more often than not.
pub fn json_scalar() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(NUMBERS).prop_map(str::to_owned),
        4 => select(STRINGS).prop_map(str::to_owned),
        2 => any::<String>().prop_map(|s| json_string(&s)),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
        1 => select(vec!["true", "false", "null"]).prop_map(str::to_owned),
        1 => "[0-9]{20,400}",
        1 => "[ -~]{0,40}", // not JSON at all, most of the time
    ]
    .boxed()
}

/// A JSON tree (as text) of hostile scalars, a few levels deep, now and then with a
/// string of absurd length.
pub fn json_tree() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![300 => json_scalar(), 1 => absurd_string()];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            vec((select(KEYS).prop_map(str::to_owned), inner), 0..6)
                .prop_map(|fields| object(&fields)),
        ]
    })
    .boxed()
}

/// JSON nested hundreds to thousands of levels deep: arrays, objects or both, closed or
/// left open.
pub fn deep_json() -> BoxedStrategy<String> {
    (1usize..12_000, 0u8..3, any::<bool>(), json_scalar())
        .prop_map(|(depth, kind, closed, leaf)| {
            let (open, close) = match kind {
                0 => ("[", "]"),
                1 => ("{\"id\":", "}"),
                _ => ("[{\"a\":", "}]"),
            };
            let mut s = String::with_capacity(depth * (open.len() + close.len()) + leaf.len());
            for _ in 0..depth {
                s.push_str(open);
            }
            s.push_str(&leaf);
            if closed {
                for _ in 0..depth {
                    s.push_str(close);
                }
            }
            s
        })
        .boxed()
}

/// Any hostile JSON value (as text): a tree, a deep nest, or a scalar.
pub fn json_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => json_tree(),
        1 => deep_json(),
    ]
    .boxed()
}

/// A valid client message id, as the contract allows: 1–64 printable ASCII characters.
fn msg_id() -> impl Strategy<Value = String> {
    "[ -~]{1,64}"
}

fn user() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..20, Just(u64::MAX), 1u64..]
}

fn conv() -> impl Strategy<Value = String> {
    prop_oneof![
        (user(), user())
            .prop_filter("distinct users", |(a, b)| a != b)
            .prop_map(|(a, b)| format!("d:{}:{}", a.min(b), a.max(b))),
        user().prop_map(|g| format!("g:{g}")),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        user().prop_map(|u| format!("u:{u}")),
        user().prop_map(|g| format!("g:{g}"))
    ]
}

fn str_field(k: &str, v: String) -> (String, String) {
    (k.to_owned(), json_string(&v))
}

fn num_field(k: &str, v: u64) -> (String, String) {
    (k.to_owned(), v.to_string())
}

/// A valid client frame of any type, as its list of members.
pub fn valid_frame() -> BoxedStrategy<Vec<(String, String)>> {
    let ty = |t: &str| ("type".to_owned(), json_string(t));
    prop_oneof![
        (msg_id(), target(), ".{1,40}").prop_map(move |(id, to, body)| vec![
            ty("send"),
            str_field("id", id),
            str_field("to", to),
            str_field("body", body),
        ]),
        (select(vec!["ack", "read"]), conv(), any::<u64>()).prop_map(move |(t, c, s)| vec![
            ty(t),
            str_field("conv", c),
            num_field("seq", s),
        ]),
        (any::<u64>(), 1u64..=1000).prop_map(move |(a, l)| vec![
            ty("sync"),
            num_field("after", a),
            num_field("limit", l),
        ]),
        (conv(), any::<u64>(), 1u64..=200).prop_map(move |(c, b, l)| vec![
            ty("history"),
            str_field("conv", c),
            num_field("before", b),
            num_field("limit", l),
        ]),
        conv().prop_map(move |c| vec![ty("typing"), str_field("conv", c)]),
        vec(user(), 0..5).prop_map(move |us| vec![
            ty("presence_sub"),
            (
                "users".to_owned(),
                format!(
                    "[{}]",
                    us.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                )
            ),
        ]),
        Just(vec![ty("ping")]),
    ]
    .boxed()
}

/// One change that makes a valid object hostile.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the value of the member at this index (modulo the member count).
    Replace(usize, String),
    /// Remove the member at this index.
    Remove(usize),
    /// Repeat the member at this index's key with another value.
    Duplicate(usize, String),
    /// Add a member with this key and value.
    Add(String, String),
    /// Put a hostile number in an integer field (added when the frame has none).
    Integer(String),
}

pub fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Duplicate(i, v)),
        1 => (select(KEYS).prop_map(str::to_owned), json_value())
            .prop_map(|(k, v)| Mutation::Add(k, v)),
        2 => select(NUMBERS).prop_map(|n| Mutation::Integer(n.to_owned())),
    ]
    .boxed()
}

/// Applies a mutation to an object's members.
pub fn mutate(mut fields: Vec<(String, String)>, m: Mutation) -> Vec<(String, String)> {
    let n = fields.len().max(1);
    match m {
        Mutation::Replace(i, v) => {
            if let Some(f) = fields.get_mut(i % n) {
                f.1 = v;
            }
        }
        Mutation::Remove(i) => {
            if i % n < fields.len() {
                fields.remove(i % n);
            }
        }
        Mutation::Duplicate(i, v) => {
            if let Some((k, _)) = fields.get(i % n) {
                let k = k.clone();
                fields.push((k, v));
            }
        }
        Mutation::Add(k, v) => fields.push((k, v)),
        Mutation::Integer(v) => match fields.iter_mut().find(|f| INT_KEYS.contains(&&*f.0)) {
            Some(f) => f.1 = v,
            None => fields.push(("seq".to_owned(), v)),
        },
    }
    fields
}

/// A valid frame with one member made hostile.
pub fn mutated_frame() -> BoxedStrategy<String> {
    (valid_frame(), mutation())
        .prop_map(|(f, m)| object(&mutate(f, m)))
        .boxed()
}

/// The text of a WebSocket text frame: mostly frames that are nearly right, and JSON and
/// text that is anything but.
pub fn frame_text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => mutated_frame(),
        1 => valid_frame().prop_map(|f| object(&f)),
        3 => json_value(),
        1 => any::<String>(),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// Which identity parser a text is fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    User,
    Conv,
    Target,
    MsgId,
    Device,
}

/// Digits and near-digits where an identity wants a user or group id.
const ID_NUMBERS: &[&str] = &[
    "1",
    "2",
    "7",
    "0",
    "-1",
    "+1",
    "01",
    "00",
    " 1",
    "1 ",
    "",
    "1\u{0}",
    "\u{0}",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1.0",
    "1e3",
    "\u{661}",
    "\u{ff11}",
    "0x1",
];

fn id_number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(ID_NUMBERS).prop_map(str::to_owned),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{1,30}",
    ]
}

/// A text for an identity parser: almost-right identities (`d:2:1`, `u:0`,
/// `g:18446744073709551616`, `d:1:2:3`), printable ASCII, any Unicode, absurd lengths.
pub fn id_case() -> BoxedStrategy<(IdKind, String)> {
    let kind = select(vec![
        IdKind::User,
        IdKind::Conv,
        IdKind::Target,
        IdKind::MsgId,
        IdKind::Device,
    ]);
    let structured = (
        select(vec!["d:", "g:", "u:", "x:", "", "D:", "d::", "d:\u{0}"]),
        id_number(),
        proptest::option::of((select(vec![":", "::", ";"]), id_number())),
        proptest::option::of(select(vec![":", ":1", "\u{0}", " ", "/x"])),
    )
        .prop_map(|(p, a, b, tail)| {
            let mut s = format!("{p}{a}");
            if let Some((sep, b)) = b {
                s.push_str(sep);
                s.push_str(&b);
            }
            s.push_str(tail.unwrap_or(""));
            s
        });
    let text = prop_oneof![
        4 => structured,
        2 => "[ -~]{0,70}",
        1 => "[A-Za-z0-9_-]{60,70}",
        2 => any::<String>(),
        1 => (select(vec!["1", "x", "é"]), 64usize..100_000).prop_map(|(c, n)| c.repeat(n)),
    ];
    (kind, text).boxed()
}

/// What a hostile token was made of, and who it must be accepted as, if anyone.
#[derive(Debug, Clone)]
pub struct TokenCase {
    pub token: String,
    /// `Some((user, device))` when the token is well formed, HS256-signed with the
    /// server's secret, unexpired and names a valid user and device; `None` when it
    /// must be refused.
    pub expect: Option<(u64, String)>,
}

/// base64url without padding, as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Token headers: (JSON text, whether it is a header the server must accept). The
/// first three are the valid ones (see [`mostly_valid`]), as in the lists below.
const HEADERS: &[(&str, bool)] = &[
    (r#"{"alg":"HS256","typ":"JWT"}"#, true),
    (r#"{"alg":"HS256"}"#, true),
    (r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#, true),
    (r#"{"alg":"none","typ":"JWT"}"#, false),
    (r#"{"alg":"none"}"#, false),
    (r#"{"alg":"None"}"#, false),
    (r#"{"alg":"HS384","typ":"JWT"}"#, false),
    (r#"{"alg":"HS512"}"#, false),
    (r#"{"alg":"RS256"}"#, false),
    (r#"{"alg":"ES256"}"#, false),
    (r#"{"alg":"hs256"}"#, false),
    (r#"{"alg":"HS256\u0000"}"#, false),
    (r#"{"alg":"\ud800"}"#, false),
    (r#"{"alg":null}"#, false),
    (r#"{"alg":["HS256"]}"#, false),
    (r#"{"alg":"none","alg":"HS256"}"#, false),
    (r#"{"alg":"HS256","typ":5}"#, false),
    (r#"{}"#, false),
    (r#"[]"#, false),
    (r#"null"#, false),
    (r#"not json"#, false),
    ("", false),
];

/// Token subjects: (JSON member value, or None to leave `sub` out; the user it names
/// when valid).
const SUBS: &[(Option<&str>, Option<u64>)] = &[
    (Some(r#""7""#), Some(7)),
    (Some(r#""1""#), Some(1)),
    (Some(r#""18446744073709551615""#), Some(u64::MAX)),
    (Some(r#""0""#), None),
    (Some(r#""-1""#), None),
    (Some(r#""-7""#), None),
    (Some(r#""18446744073709551616""#), None),
    (Some(r#""99999999999999999999999999""#), None),
    (Some(r#""1.5""#), None),
    (Some(r#""7.0""#), None),
    (Some(r#""1e3""#), None),
    (Some(r#""""#), None),
    (Some(r#""abc""#), None),
    (Some(r#""7\u0000""#), None),
    (Some(r#""\ud800""#), None),
    (Some(r#""u:7""#), None),
    (Some("7"), None),
    (Some("0"), None),
    (Some("-1"), None),
    (Some("7.0"), None),
    (Some("1.5"), None),
    (Some("18446744073709551616"), None),
    (Some("1e400"), None),
    (Some("null"), None),
    (Some("true"), None),
    (Some(r#"["7"]"#), None),
    (Some(r#"{"id":"7"}"#), None),
    (None, None),
];

/// Token devices: (JSON member value or None, whether valid).
const DEVS: &[(Option<&str>, bool)] = &[
    (Some(r#""phone""#), true),
    (Some(r#""a-b_C9""#), true),
    (
        Some(r#""dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd""#),
        true,
    ),
    (
        Some(r#""ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd""#),
        false,
    ),
    (Some(r#""""#), false),
    (Some(r#""a b""#), false),
    (Some(r#""a\u0000""#), false),
    (Some(r#""é""#), false),
    (Some("5"), false),
    (Some("null"), false),
    (None, false),
];

/// Token expiries, relative to now when `Rel`.
#[derive(Debug, Clone, Copy)]
enum Exp {
    /// Seconds from now: valid when positive.
    Rel(i64),
    /// This JSON text: never valid.
    Bad(&'static str),
    Max,
    Missing,
}

const EXPS: &[Exp] = &[
    Exp::Rel(3600),
    Exp::Rel(86_400 * 365),
    Exp::Max,
    Exp::Rel(-10),
    Exp::Rel(-86_400),
    Exp::Bad("0"),
    Exp::Bad("-1"),
    Exp::Bad("18446744073709551616"),
    Exp::Bad("1e400"),
    Exp::Bad("4102444800.5"),
    Exp::Bad(r#""4102444800""#),
    Exp::Bad("null"),
    Exp::Missing,
];

/// How a token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    /// HS256 with the server's secret: the only valid signature.
    Right,
    /// HS256 with another secret.
    WrongKey,
    /// HS384 with the server's secret.
    WrongAlg,
    Empty,
    Garbage,
    Truncated,
    /// One character of the right signature changed.
    Flipped,
}

/// How the three parts are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Normal,
    /// An extra claim of 100 000 characters, properly signed.
    Huge,
    TwoParts,
    FourParts,
    Padded,
    Spaced,
    /// The payload part replaced by characters that are not base64url.
    BadBase64,
}

/// A secret the server does not use.
pub const WRONG_SECRET: &str = "not-the-server-secret";

/// One part of a token: most of the time one of the list's first three, which are the
/// valid ones, so that many tokens are right but for one part.
fn mostly_valid<T: Clone + std::fmt::Debug + 'static>(parts: &'static [T]) -> BoxedStrategy<T> {
    prop_oneof![3 => select(&parts[..3]), 1 => select(parts)].boxed()
}

/// Tokens made of hostile parts: `alg: none` and other algorithms, wrong keys, expired,
/// `sub` of 0, negative, past u64, a number or float instead of a string, missing, huge
/// tokens, base64 that is not base64. `secret` is the server's.
pub fn token(secret: &'static str, now: u64) -> BoxedStrategy<TokenCase> {
    (
        mostly_valid(HEADERS),
        mostly_valid(SUBS),
        mostly_valid(DEVS),
        mostly_valid(EXPS),
        prop_oneof![
            6 => Just(Sig::Right),
            1 => select(vec![
                Sig::WrongKey,
                Sig::WrongAlg,
                Sig::Empty,
                Sig::Garbage,
                Sig::Truncated,
                Sig::Flipped,
            ]),
        ],
        prop_oneof![
            8 => Just(Shape::Normal),
            1 => select(vec![
                Shape::TwoParts,
                Shape::FourParts,
                Shape::Padded,
                Shape::Spaced,
                Shape::BadBase64,
            ]),
            // Rare: they are slow to sign and check a million times.
            1 => proptest::bool::weighted(0.05)
                .prop_map(|huge| if huge { Shape::Huge } else { Shape::Normal }),
        ],
        "[A-Za-z0-9+/=!.~ -]{0,80}",
    )
        .prop_map(move |(header, sub, dev, exp, sig, shape, junk)| {
            make_token(secret, now, header, sub, dev, exp, sig, shape, &junk)
        })
        .boxed()
}

#[allow(clippy::too_many_arguments)]
fn make_token(
    secret: &str,
    now: u64,
    header: (&str, bool),
    sub: (Option<&str>, Option<u64>),
    dev: (Option<&str>, bool),
    exp: Exp,
    sig: Sig,
    shape: Shape,
    junk: &str,
) -> TokenCase {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let mut claims = Vec::new();
    if let Some(s) = sub.0 {
        claims.push(("sub".to_owned(), s.to_owned()));
    }
    if let Some(d) = dev.0 {
        claims.push(("dev".to_owned(), d.to_owned()));
    }
    let exp_ok = match exp {
        Exp::Rel(d) => {
            claims.push(("exp".to_owned(), now.saturating_add_signed(d).to_string()));
            d > 0
        }
        Exp::Bad(t) => {
            claims.push(("exp".to_owned(), t.to_owned()));
            false
        }
        Exp::Max => {
            claims.push(("exp".to_owned(), u64::MAX.to_string()));
            true
        }
        Exp::Missing => false,
    };
    if shape == Shape::Huge {
        claims.push(("pad".to_owned(), json_string(&"p".repeat(100_000))));
    }
    let mut signing_input = format!(
        "{}.{}",
        b64url(header.0.as_bytes()),
        b64url(object(&claims).as_bytes())
    );
    let key = |s: &str| EncodingKey::from_secret(s.as_bytes()).expect("a non-empty secret");
    let sign = |k: &str, alg| {
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key(k), alg).unwrap_or_default()
    };
    let signature = match sig {
        Sig::Right => sign(secret, Algorithm::HS256),
        Sig::WrongKey => sign(WRONG_SECRET, Algorithm::HS256),
        Sig::WrongAlg => sign(secret, Algorithm::HS384),
        Sig::Empty => String::new(),
        Sig::Garbage => junk.to_owned(),
        Sig::Truncated => {
            let s = sign(secret, Algorithm::HS256);
            s[..s.len() / 2].to_owned()
        }
        Sig::Flipped => {
            let mut s = sign(secret, Algorithm::HS256).into_bytes();
            s[0] = if s[0] == b'A' { b'B' } else { b'A' };
            String::from_utf8(s).unwrap_or_default()
        }
    };
    let token = match shape {
        Shape::Normal | Shape::Huge => format!("{signing_input}.{signature}"),
        Shape::TwoParts => signing_input.clone(),
        Shape::FourParts => format!("{signing_input}.{signature}.{signature}"),
        Shape::Padded => format!("{signing_input}==.{signature}"),
        Shape::Spaced => format!(" {signing_input}.{signature} "),
        Shape::BadBase64 => {
            let head = signing_input.split('.').next().unwrap_or("").to_owned();
            signing_input = format!("{head}.{junk}!");
            format!("{signing_input}.{signature}")
        }
    };
    let valid = header.1
        && sig == Sig::Right
        && matches!(shape, Shape::Normal | Shape::Huge)
        && sub.1.is_some()
        && dev.1
        && exp_ok;
    let expect = valid.then(|| {
        let device: String = serde_json::from_str(dev.0.unwrap_or("\"\"")).unwrap_or_default();
        (sub.1.unwrap_or(0), device)
    });
    TokenCase { token, expect }
}

/// The routes whose JSON bodies are fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRoute {
    /// `POST /v1/messages`
    Message,
    /// `POST /v1/ack` and `POST /v1/read`
    Mark,
    /// `POST /v1/groups`
    Group,
    /// `POST /v1/groups/{id}/members`
    Member,
    /// `PUT /v1/devices/{device}/push`
    Push,
    /// `POST /v1/dev/token`
    DevLogin,
}

/// A hostile HTTP request body for one route.
#[derive(Debug, Clone)]
pub struct BodyCase {
    pub route: BodyRoute,
    /// Whether the request says `content-type: application/json`.
    pub json: bool,
    pub body: Vec<u8>,
}

fn valid_body(route: BodyRoute) -> BoxedStrategy<Vec<(String, String)>> {
    match route {
        BodyRoute::Message => (msg_id(), target(), ".{1,40}")
            .prop_map(|(id, to, body)| {
                vec![
                    str_field("id", id),
                    str_field("to", to),
                    str_field("body", body),
                ]
            })
            .boxed(),
        BodyRoute::Mark => (conv(), any::<u64>())
            .prop_map(|(c, s)| vec![str_field("conv", c), num_field("seq", s)])
            .boxed(),
        BodyRoute::Group => (".{0,20}", vec(user(), 0..5))
            .prop_map(|(name, members)| {
                let members = members
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    str_field("name", name),
                    ("members".to_owned(), format!("[{members}]")),
                ]
            })
            .boxed(),
        BodyRoute::Member => user().prop_map(|u| vec![num_field("user", u)]).boxed(),
        BodyRoute::Push => ("[a-z]{1,8}", "[ -~]{1,40}")
            .prop_map(|(p, t)| vec![str_field("platform", p), str_field("token", t)])
            .boxed(),
        BodyRoute::DevLogin => (user(), "[A-Za-z0-9_-]{1,64}")
            .prop_map(|(u, d)| vec![num_field("user", u), str_field("device", d)])
            .boxed(),
    }
}

/// Bodies: valid ones with one member made hostile, hostile JSON, bytes that are not
/// UTF-8 inside a string, arbitrary bytes; now and then without the JSON content type.
pub fn body_case() -> BoxedStrategy<BodyCase> {
    let route = select(vec![
        BodyRoute::Message,
        BodyRoute::Mark,
        BodyRoute::Group,
        BodyRoute::Member,
        BodyRoute::Push,
        BodyRoute::DevLogin,
    ]);
    route
        .prop_flat_map(|route| {
            let body = prop_oneof![
                6 => (valid_body(route), mutation())
                    .prop_map(|(f, m)| object(&mutate(f, m)).into_bytes()),
                1 => valid_body(route).prop_map(|f| object(&f).into_bytes()),
                3 => json_value().prop_map(String::into_bytes),
                1 => (valid_body(route), vec(128u8..=255, 1..4)).prop_map(|(f, bad)| {
                    // A string member whose bytes are not UTF-8.
                    let mut text = object(&f).into_bytes();
                    if let Some(q) = text.iter().rposition(|&b| b == b'"') {
                        text.splice(q..q, bad);
                    }
                    text
                }),
                1 => vec(any::<u8>(), 0..128),
            ];
            (Just(route), proptest::bool::weighted(0.95), body)
                .prop_map(|(route, json, body)| BodyCase { route, json, body })
        })
        .boxed()
}

/// One WebSocket frame as a client could put it on the wire, right or wrong.
#[derive(Debug, Clone)]
pub struct WireFrame {
    pub fin: bool,
    /// The three reserved bits (must be 0 without an extension).
    pub rsv: u8,
    /// 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong; others are reserved.
    pub opcode: u8,
    /// Clients must mask; `None` sends it unmasked.
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
    /// A declared payload length other than the real one (absurd ones included): the
    /// header says this, the bytes that follow are the payload as it is.
    pub declared: Option<u64>,
}

impl WireFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push((u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 15));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.declared.unwrap_or(self.payload.len() as u64);
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= u64::from(u16::MAX) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// Payloads of 64 KiB and more: at, just past and well past the server's frame limit.
fn big_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        select(vec![64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 100 * 1024]),
        any::<u8>(),
    )
        .prop_map(|(n, b)| vec![b; n])
}

fn payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => frame_text().prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..200),
        // Text that is not UTF-8: a bad byte, or a sequence cut short at the end.
        2 => (frame_text(), select(vec![
            vec![0xff],
            vec![0xc3],
            vec![0xed, 0xa0, 0x80],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xc0, 0xaf],
            vec![0xe2, 0x82],
        ]), any::<bool>())
            .prop_map(|(t, bad, at_end)| {
                let mut b = t.into_bytes();
                if at_end { b.extend(bad) } else { b.splice(0..0, bad); }
                b
            }),
        1 => big_payload(),
    ]
    .boxed()
}

pub fn wire_frame() -> BoxedStrategy<WireFrame> {
    (
        prop_oneof![6 => Just(true), 1 => Just(false)],
        prop_oneof![12 => Just(0u8), 1 => 1u8..8],
        prop_oneof![
            8 => Just(1u8),
            2 => Just(2u8),
            1 => Just(0u8),
            1 => select(vec![8u8, 9, 10]),
            1 => 0u8..16,
        ],
        prop_oneof![15 => any::<[u8; 4]>().prop_map(Some), 1 => Just(None)],
        payload(),
        prop_oneof![
            20 => Just(None),
            1 => select(vec![
                0,
                125,
                126,
                65_535,
                65_537,
                1 << 32,
                (1 << 63) - 1,
                1 << 63,
                u64::MAX,
            ])
            .prop_map(Some),
        ],
    )
        .prop_map(|(fin, rsv, opcode, mask, payload, declared)| {
            // Control frames carry at most 125 bytes; most of them keep to that.
            let payload = if opcode >= 8 && payload.len() > 125 && fin {
                payload[..125].to_vec()
            } else {
                payload
            };
            WireFrame {
                fin,
                rsv,
                opcode,
                mask,
                payload,
                declared,
            }
        })
        .boxed()
}

/// What a client writes on an open WebSocket: a few frames (well or badly formed,
/// fragmented or not), cut short or with a byte changed now and then, or bytes that are
/// no frame at all.
pub fn ws_stream() -> BoxedStrategy<Vec<u8>> {
    let frames = vec(wire_frame(), 1..4)
        .prop_map(|fs| fs.iter().flat_map(WireFrame::encode).collect::<Vec<u8>>())
        .boxed();
    prop_oneof![
        8 => frames.clone(),
        1 => (frames.clone(), any::<prop::sample::Index>())
            .prop_map(|(b, i)| {
                let cut = if b.is_empty() { 0 } else { i.index(b.len()) };
                b[..cut].to_vec()
            }),
        1 => (frames, any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(mut b, i, x)| {
                if !b.is_empty() {
                    let at = i.index(b.len());
                    b[at] ^= x | 1;
                }
                b
            }),
        1 => vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

/// A JWT from a header's and a payload's JSON text, HS256-signed with `secret` (or with
/// an empty signature when `None`).
pub fn jwt(header: &str, payload: &str, secret: Option<&str>) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let signature = secret
        .and_then(|s| jsonwebtoken::EncodingKey::from_secret(s.as_bytes()).ok())
        .and_then(|k| {
            jsonwebtoken::crypto::sign(input.as_bytes(), &k, jsonwebtoken::Algorithm::HS256).ok()
        })
        .unwrap_or_default();
    format!("{input}.{signature}")
}
