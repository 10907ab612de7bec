//! Hostile input, fuzzed on stable Rust: property tests over the WebSocket frame decoder,
//! the JSON frame parser, the identity parsers, the token check and the HTTP bodies
//! (generators in `hostile/inputs.rs`, targets in `hostile/targets.rs`, shared with the
//! fuzz bench `benches/fuzz.rs`, which runs each a million times); a regression case for
//! each kind of hostile input named in the contract's spirit; and the same hostile input
//! sent to a real server, which answers with the contract's codes and keeps serving.
//!
//! Cases per property: `HOSTILE_CASES` (default 5000).

mod inputs;
mod targets;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chat_server::auth::{Auth, now_secs};
use futures_util::SinkExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use self::inputs::{BodyCase, BodyRoute, IdKind, TokenCase, WireFrame, jwt};
use self::targets::Outcome::{self, Accepted, Closed, Rejected};
use crate::support::{SECRET, Server, WAIT};

fn cases() -> u32 {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // The regressions worth keeping are written out below, by hand.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| Auth::new(SECRET).expect("a usable secret"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ws_frame_decoder_answers_every_byte_stream_within_the_contract(
        bytes in inputs::ws_stream()
    ) {
        targets::ws_frames(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn json_frame_parser_accepts_or_answers_bad_request(text in inputs::frame_text()) {
        targets::client_frame(&text).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn identities_parse_to_valid_values_or_bad_request(
        (kind, text) in inputs::id_case()
    ) {
        targets::identity(kind, &text).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn tokens_are_accepted_exactly_when_valid(
        case in inputs::token(SECRET, now_secs())
    ) {
        targets::token(auth(), &case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn http_bodies_decode_or_answer_bad_request_or_too_large(case in inputs::body_case()) {
        targets::http_body(&case).map_err(TestCaseError::fail)?;
    }
}

// ---- Regression cases: each hostile input the contract's bad-input rules cover. ----

fn frame(text: &str) -> Outcome {
    targets::client_frame(text).unwrap_or_else(|e| panic!("{text:.200}: {e}"))
}

fn nested(depth: usize, open: &str, leaf: &str, close: &str) -> String {
    format!("{}{leaf}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn deeply_nested_json_is_bad_request() {
    for depth in [129, 1_000, 10_000, 100_000] {
        for text in [
            nested(depth, "[", "0", "]"),
            nested(depth, "{\"a\":", "0", "}"),
            nested(depth, "[", "", ""),
            format!(
                r#"{{"type":"send","id":"deep","to":"u:2","body":{}}}"#,
                nested(depth, "[", "\"x\"", "]")
            ),
            format!(
                r#"{{"type":"ping","id":{}}}"#,
                nested(depth, "{\"id\":", "1", "}")
            ),
        ] {
            assert_eq!(frame(&text), Rejected("bad_request"), "depth {depth}");
        }
    }
}

#[test]
fn numbers_where_unsigned_integers_go_are_bad_request() {
    for n in [
        "1e400",
        "-1e400",
        "18446744073709551616",
        "99999999999999999999999999",
        "-1",
        "-0.0",
        "1.5",
        "1.0",
        "1e3",
        "\"1\"",
        "\"18446744073709551615\"",
        "null",
        "true",
        "[1]",
        "NaN",
        "0x10",
    ] {
        for text in [
            format!(r#"{{"type":"ack","conv":"d:1:2","seq":{n}}}"#),
            format!(r#"{{"type":"read","conv":"d:1:2","seq":{n}}}"#),
            format!(r#"{{"type":"sync","after":{n}}}"#),
            format!(r#"{{"type":"sync","limit":{n}}}"#),
            format!(r#"{{"type":"history","conv":"d:1:2","before":{n}}}"#),
            format!(r#"{{"type":"presence_sub","users":[{n}]}}"#),
        ] {
            // `null` is "absent" for the optional fields, which is fine.
            let optional = n == "null" && (text.contains("limit") || text.contains("before"));
            let expected = if optional {
                Accepted
            } else {
                Rejected("bad_request")
            };
            assert_eq!(frame(&text), expected, "{text}");
        }
    }
    // The largest u64 is a valid integer: limits are the service's to check.
    assert_eq!(
        frame(r#"{"type":"ack","conv":"d:1:2","seq":18446744073709551615}"#),
        Accepted
    );
}

#[test]
fn lone_surrogates_and_nul_are_refused_where_they_do_not_belong() {
    for field in ["type", "id", "to", "body"] {
        for bad in [r#""\ud800""#, r#""\udc00""#, r#""a\ud800b""#, "\"a\u{0}b\""] {
            let mut f = json!({"type": "send", "id": "m1", "to": "u:2", "body": "b"});
            f[field] = json!("PLACEHOLDER");
            let text = f.to_string().replace("\"PLACEHOLDER\"", bad);
            assert_eq!(frame(&text), Rejected("bad_request"), "{text}");
        }
    }
    // An escaped NUL is a character like another: refused in ids and targets, where only
    // printable ASCII goes, and taken in a body, which is any UTF-8 text.
    for text in [
        r#"{"type":"send","id":"m\u0000","to":"u:2","body":"b"}"#,
        r#"{"type":"send","id":"m1","to":"u:2\u0000","body":"b"}"#,
        r#"{"type":"typing","conv":"d:1:2\u0000"}"#,
        r#"{"type":"send\u0000","id":"m1","to":"u:2","body":"b"}"#,
    ] {
        assert_eq!(frame(text), Rejected("bad_request"), "{text}");
    }
    assert_eq!(
        frame(r#"{"type":"send","id":"m1","to":"u:2","body":"a\u0000b"}"#),
        Accepted
    );
    // A surrogate pair is a proper character.
    assert_eq!(
        frame(r#"{"type":"send","id":"m1","to":"u:2","body":"\ud83d\ude00"}"#),
        Accepted
    );
}

#[test]
fn ref_echoes_the_offending_frames_id() {
    let text = r#"{"type":"send","id":"m7","to":"u:0","body":"b"}"#;
    let (_, reference) = chat_server::ws::decode_text(text).unwrap_err();
    assert_eq!(reference, Some(json!("m7")));
    // No `ref` from a frame that is not an object, or whose `id` is itself hostile.
    for text in [
        "[1]",
        r#"{"type":"send","id":"\ud800","to":"u:2","body":"b"}"#,
        r#"{"type":"send","id":"a","id":"b","to":"u:0","body":"b"}"#,
    ] {
        let (_, reference) = chat_server::ws::decode_text(text).unwrap_err();
        assert_eq!(reference, None, "{text}");
    }
}

#[test]
fn identities_of_absurd_length_or_form_are_bad_request() {
    let long = "1".repeat(100_000);
    for (kind, text) in [
        (IdKind::User, "0"),
        (IdKind::User, "-1"),
        (IdKind::User, "18446744073709551616"),
        (IdKind::User, long.as_str()),
        (IdKind::User, "1\u{0}"),
        (IdKind::User, "\u{661}"),
        (IdKind::Conv, "d:2:1"),
        (IdKind::Conv, "d:1:1"),
        (IdKind::Conv, "d:0:1"),
        (IdKind::Conv, "d:1:18446744073709551616"),
        (IdKind::Conv, "d:1:2:3"),
        (IdKind::Conv, "g:0"),
        (IdKind::Conv, "g:-1"),
        (IdKind::Conv, "d:1:2\u{0}"),
        (IdKind::Target, "u:0"),
        (IdKind::Target, "u:-1"),
        (IdKind::Target, "u:18446744073709551616"),
        (IdKind::Target, "d:1:2"),
        (IdKind::MsgId, ""),
        (IdKind::MsgId, "\u{0}"),
        (IdKind::MsgId, "é"),
        (IdKind::MsgId, &"x".repeat(65)),
        (IdKind::Device, &"d".repeat(65)),
        (IdKind::Device, "a b"),
        (IdKind::Device, ""),
    ] {
        assert_eq!(
            targets::identity(kind, text),
            Ok(Rejected("bad_request")),
            "{kind:?} {text:.40}"
        );
    }
    assert_eq!(
        targets::identity(IdKind::Conv, "d:1:18446744073709551615"),
        Ok(Accepted)
    );
    assert_eq!(
        targets::identity(IdKind::MsgId, &"~".repeat(64)),
        Ok(Accepted)
    );
}

fn token_case(token: String, expect: Option<(u64, &str)>) -> Outcome {
    let case = TokenCase {
        token,
        expect: expect.map(|(u, d)| (u, d.to_owned())),
    };
    targets::token(auth(), &case).unwrap_or_else(|e| panic!("{:.200}: {e}", case.token))
}

#[test]
fn hostile_tokens_are_unauthorized() {
    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    let future = now_secs() + 3600;
    let claims = |sub: &str| format!(r#"{{"sub":{sub},"dev":"d","exp":{future}}}"#);
    let good = jwt(HS256, &claims("\"7\""), Some(SECRET));
    assert_eq!(token_case(good.clone(), Some((7, "d"))), Accepted);
    let mut refused = vec![
        // alg: none, unsigned or signed anyway, and other algorithms.
        jwt(r#"{"alg":"none","typ":"JWT"}"#, &claims("\"7\""), None),
        jwt(r#"{"alg":"none"}"#, &claims("\"7\""), Some(SECRET)),
        jwt(r#"{"alg":"HS384"}"#, &claims("\"7\""), Some(SECRET)),
        jwt(r#"{"alg":"RS256"}"#, &claims("\"7\""), Some(SECRET)),
        format!("{}.", good.rsplit_once('.').unwrap().0),
        // Wrong key, expired.
        jwt(HS256, &claims("\"7\""), Some(inputs::WRONG_SECRET)),
        jwt(
            HS256,
            &format!(r#"{{"sub":"7","dev":"d","exp":{}}}"#, now_secs() - 10),
            Some(SECRET),
        ),
        // Missing claims.
        jwt(
            HS256,
            &format!(r#"{{"dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(
            HS256,
            &format!(r#"{{"sub":"7","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(HS256, r#"{"sub":"7","dev":"d"}"#, Some(SECRET)),
        // Huge tokens, signed or not; garbage base64; not three parts.
        jwt(
            HS256,
            &format!(
                r#"{{"sub":"7","dev":"d","exp":{future},"pad":"{}"}}"#,
                "p".repeat(1 << 20)
            ),
            Some(inputs::WRONG_SECRET),
        ),
        "a".repeat(1 << 20),
        format!(
            "{}.{}.{}",
            "!".repeat(100),
            "*".repeat(100),
            "~".repeat(100)
        ),
        "e30.e30.".to_owned(),
        "..".to_owned(),
        String::new(),
        format!(" {good}"),
        format!("{good}.{good}"),
    ];
    // `sub` of 0, negative, past u64, a float, a number instead of a string, hostile text.
    for sub in [
        "\"0\"",
        "\"-1\"",
        "\"18446744073709551616\"",
        "\"1.5\"",
        "\"7.0\"",
        "\"\"",
        "\"7\\u0000\"",
        "\"\\ud800\"",
        "7",
        "0",
        "-1",
        "7.0",
        "18446744073709551616",
        "1e400",
        "null",
        "[\"7\"]",
    ] {
        refused.push(jwt(HS256, &claims(sub), Some(SECRET)));
    }
    for t in refused {
        assert_eq!(
            token_case(t.clone(), None),
            Rejected("unauthorized"),
            "{t:.120}"
        );
    }
    // The largest user id is a user like another.
    let max = jwt(HS256, &claims("\"18446744073709551615\""), Some(SECRET));
    assert_eq!(token_case(max, Some((u64::MAX, "d"))), Accepted);
}

fn ws(frames: &[WireFrame]) -> Outcome {
    let bytes: Vec<u8> = frames.iter().flat_map(WireFrame::encode).collect();
    targets::ws_frames(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn wf(opcode: u8, fin: bool, payload: Vec<u8>) -> WireFrame {
    WireFrame {
        fin,
        rsv: 0,
        opcode,
        mask: Some([1, 2, 3, 4]),
        payload,
        declared: None,
    }
}

#[test]
fn frames_over_64_kib_binary_and_bad_utf8_get_the_contract_codes() {
    let ping = br#"{"type":"ping"}"#.to_vec();
    assert_eq!(ws(&[wf(1, true, ping.clone())]), Accepted);
    // Exactly 64 KiB passes the frame limit (and is then no valid frame); one byte more
    // closes 1009, as does a message of frames under the limit that adds up past it.
    assert_eq!(
        ws(&[wf(1, true, vec![b' '; 64 * 1024])]),
        Rejected("bad_request")
    );
    assert_eq!(ws(&[wf(1, true, vec![b' '; 64 * 1024 + 1])]), Closed(1009));
    assert_eq!(ws(&[wf(2, true, vec![0; 64 * 1024 + 1])]), Closed(1009));
    assert_eq!(
        ws(&[
            wf(1, false, vec![b' '; 40_000]),
            wf(0, true, vec![b' '; 40_000])
        ]),
        Closed(1009)
    );
    // Absurd declared lengths are refused before anything is read or allocated.
    for declared in [65_537, 1 << 32, (1 << 63) - 1, 1 << 63, u64::MAX] {
        let mut f = wf(1, true, ping.clone());
        f.declared = Some(declared);
        assert_eq!(ws(&[f]), Closed(1009), "declared {declared}");
    }
    // Binary frames are not part of the protocol, whatever they carry.
    assert_eq!(ws(&[wf(2, true, ping.clone())]), Rejected("bad_request"));
    // Text that is not UTF-8, whole or split across fragments: 1007.
    for bad in [
        vec![0xff],
        vec![0xc3],
        vec![0xed, 0xa0, 0x80],
        vec![0xc0, 0xaf],
    ] {
        let mut text = ping.clone();
        text.extend(&bad);
        assert_eq!(ws(&[wf(1, true, text)]), Closed(1007), "{bad:?}");
        assert_eq!(
            ws(&[wf(1, false, ping.clone()), wf(0, true, bad.clone())]),
            Closed(1007),
            "{bad:?} in a continuation"
        );
    }
    // Breaking the WebSocket protocol itself (unmasked, reserved bits or opcodes, a
    // continuation with nothing to continue, an oversized control frame) ends it.
    let mut unmasked = wf(1, true, ping.clone());
    unmasked.mask = None;
    let mut rsv = wf(1, true, ping.clone());
    rsv.rsv = 4;
    for f in [
        unmasked,
        rsv,
        wf(3, true, ping.clone()),
        wf(11, true, vec![]),
        wf(0, true, ping.clone()),
        wf(9, true, vec![0; 126]),
        wf(9, false, vec![]),
    ] {
        assert_eq!(ws(std::slice::from_ref(&f)), Closed(1002), "{f:?}");
    }
    // Control frames between fragments are fine; the client's close is answered.
    assert_eq!(
        ws(&[
            wf(1, false, b"{\"type\":".to_vec()),
            wf(9, true, vec![1]),
            wf(0, true, b"\"ping\"}".to_vec()),
        ]),
        Accepted
    );
    assert_eq!(ws(&[wf(8, true, vec![0x03, 0xe8])]), Closed(1000));
}

#[test]
fn hostile_http_bodies_are_bad_request_or_too_large() {
    let case = |route, json, body: Vec<u8>| {
        targets::http_body(&BodyCase { route, json, body }).unwrap_or_else(|e| panic!("{e}"))
    };
    let ok = br#"{"id":"m1","to":"u:2","body":"b"}"#.to_vec();
    assert_eq!(case(BodyRoute::Message, true, ok.clone()), Accepted);
    assert_eq!(case(BodyRoute::Message, false, ok), Rejected("bad_request"));
    for body in [
        nested(10_000, "[", "0", "]"),
        nested(10_000, "{\"id\":", "0", "}"),
        r#"{"conv":"d:1:2","seq":1e400}"#.to_owned(),
        r#"{"conv":"d:1:2","seq":18446744073709551616}"#.to_owned(),
        r#"{"conv":"d:1:2","seq":-1}"#.to_owned(),
        r#"{"conv":"d:1:2","seq":1.5}"#.to_owned(),
        r#"{"conv":"\ud800","seq":1}"#.to_owned(),
        "{\"conv\":\"d:1:2\u{0}\",\"seq\":1}".to_owned(),
    ] {
        assert_eq!(
            case(BodyRoute::Mark, true, body.into_bytes()),
            Rejected("bad_request")
        );
    }
    let mut not_utf8 = br#"{"name":"x"#.to_vec();
    not_utf8.extend([0xff, b'"', b'}']);
    assert_eq!(
        case(BodyRoute::Group, true, not_utf8),
        Rejected("bad_request")
    );
    assert_eq!(
        case(
            BodyRoute::Member,
            true,
            br#"{"user":18446744073709551616}"#.to_vec()
        ),
        Rejected("bad_request")
    );
    // Past the 2 MiB body limit: too large, whatever it holds.
    let huge = format!(r#"{{"platform":"x","token":"{}"}}"#, "t".repeat(3 << 20));
    assert_eq!(
        case(BodyRoute::Push, true, huge.into_bytes()),
        Rejected("too_large")
    );
}

// ---- The same over a real server: the contract's answers, and it keeps serving. ----

/// A fresh pair of users on the server can still send and get `sent`.
async fn still_serving(s: &Server, tag: &str) {
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    let n = CHECKS.fetch_add(1, Ordering::Relaxed);
    let mut c = s.connect(101, &format!("check-{n}")).await;
    let sent = c
        .send_msg(&format!("alive-{n}"), "u:102", "still here")
        .await;
    assert_eq!(sent["type"], "sent", "after {tag}: {sent}");
}

/// Sends `frames` raw (the client masks them) and waits for the close code.
async fn closes_with(s: &Server, user: u64, frames: Vec<Frame>) -> u16 {
    let mut c = s.connect(user, "hostile").await;
    for f in frames {
        if c.ws.feed(Message::Frame(f)).await.is_err() {
            break;
        }
    }
    let _ = c.ws.flush().await;
    c.closed_with().await
}

#[tokio::test]
async fn over_64_kib_binary_and_bad_utf8_close_with_their_codes_and_the_server_serves_on() {
    let s = Server::start().await;
    let text = |b: Vec<u8>, fin| Frame::message(b, OpCode::Data(Data::Text), fin);
    let cont = |b: Vec<u8>| Frame::message(b, OpCode::Data(Data::Continue), true);
    // A binary frame over the limit; a text message over it in two frames under it.
    let bin = Frame::message(vec![7u8; 64 * 1024 + 1], OpCode::Data(Data::Binary), true);
    assert_eq!(closes_with(&s, 1, vec![bin]).await, 1009);
    still_serving(&s, "binary 64 KiB+").await;
    let two = vec![text(vec![b' '; 40_000], false), cont(vec![b' '; 40_000])];
    assert_eq!(closes_with(&s, 1, two).await, 1009);
    still_serving(&s, "fragmented 80 KiB").await;
    // Not UTF-8 in a continuation, and a character cut short at the end.
    let split = vec![text(br#"{"type":"#.to_vec(), false), cont(vec![0xff])];
    assert_eq!(closes_with(&s, 1, split).await, 1007);
    let cut = vec![text(vec![b'"', 0xc3], true)];
    assert_eq!(closes_with(&s, 1, cut).await, 1007);
    still_serving(&s, "bad UTF-8").await;
    // Exactly 64 KiB is within the limit: a frame like another, here a body too large.
    let mut a = s.connect(1, "edge").await;
    let pad = 64 * 1024 - r#"{"type":"send","id":"edge","to":"u:2","body":""}"#.len();
    let edge = json!({"type": "send", "id": "edge", "to": "u:2", "body": "b".repeat(pad)});
    assert_eq!(edge.to_string().len(), 64 * 1024);
    a.send_json(edge).await;
    let e = a.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("too_large"), Some("edge"))
    );
    // A binary frame that carries a valid send is refused and stores nothing.
    let send = json!({"type": "send", "id": "bin", "to": "u:2", "body": "b"}).to_string();
    a.ws.send(Message::binary(send.into_bytes())).await.unwrap();
    assert_eq!(a.recv_type("error").await["code"], "bad_request");
    assert_eq!(
        a.send_msg("after", "u:2", "x").await["seq"],
        1,
        "nothing else stored"
    );
    still_serving(&s, "64 KiB").await;
}

#[tokio::test]
async fn ten_thousand_deep_json_is_bad_request_and_the_connection_stays_open() {
    let s = Server::start().await;
    let mut a = s.connect(1, "deep").await;
    for text in [
        nested(10_000, "[", "0", "]"),
        nested(10_000, "{\"a\":", "0", "}"),
        nested(10_000, "[", "", ""),
        format!(
            r#"{{"type":"send","id":"deep","to":"u:2","body":{}}}"#,
            nested(10_000, "[", "\"x\"", "]")
        ),
        format!(
            r#"{{"type":"ping","id":{}}}"#,
            nested(5_000, "{\"id\":", "1", "}")
        ),
    ] {
        assert!(text.len() <= 64 * 1024);
        a.ws.send(Message::text(text)).await.unwrap();
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], "bad_request", "{e}");
    }
    assert_eq!(a.send_msg("shallow", "u:2", "fine").await["type"], "sent");
    still_serving(&s, "deep JSON").await;
}

/// Integers at the edges of u64 in every frame that has one: the frame's answer or a
/// contract error, never a dropped connection or `internal` (the tests build with
/// overflow checks, so an overflow would panic the session).
#[tokio::test]
async fn boundary_integers_get_an_answer_and_the_connection_stays_open() {
    let s = Server::start().await;
    let mut a = s.connect(1, "edges").await;
    assert_eq!(a.send_msg("first", "u:2", "x").await["type"], "sent");
    let mut errors = 0;
    for n in [
        "0",
        "1",
        "9223372036854775808",
        "18446744073709551614",
        "18446744073709551615",
    ] {
        for text in [
            format!(r#"{{"type":"ack","conv":"d:1:2","seq":{n}}}"#),
            format!(r#"{{"type":"read","conv":"d:1:2","seq":{n}}}"#),
            format!(r#"{{"type":"sync","after":{n}}}"#),
            format!(r#"{{"type":"sync","after":{n},"limit":{n}}}"#),
            format!(r#"{{"type":"history","conv":"d:1:2","before":{n}}}"#),
            format!(r#"{{"type":"history","conv":"d:1:2","before":{n},"limit":{n}}}"#),
            format!(r#"{{"type":"presence_sub","users":[{n}]}}"#),
            format!(
                r#"{{"type":"typing","conv":"d:1:{}"}}"#,
                n.parse::<u64>().unwrap().max(2)
            ),
        ] {
            a.ws.send(Message::text(text.clone())).await.unwrap();
            a.send_json(json!({"type": "ping"})).await;
            loop {
                let v: Value = a.recv().await;
                match v["type"].as_str() {
                    Some("pong") => break,
                    Some("error") => {
                        errors += 1;
                        let code = v["code"].as_str().unwrap_or("");
                        assert!(
                            targets::CONTRACT_CODES.contains(&code) && code != "internal",
                            "{text} -> {v}"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(errors > 0, "some of those are refused");
    assert_eq!(a.send_msg("last", "u:2", "x").await["type"], "sent");
}

/// An upgraded WebSocket on a bare TCP stream, to write bytes no client library would.
async fn raw_socket(s: &Server, user: u64) -> TcpStream {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        s.addr,
        s.token(user, "raw")
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// The code of the server's close frame, or `None` if the connection ended without one.
async fn raw_close(tcp: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        loop {
            let mut h = [0u8; 2];
            tcp.read_exact(&mut h).await.ok()?;
            let len = match h[1] & 127 {
                126 => u64::from(tcp.read_u16().await.ok()?),
                127 => tcp.read_u64().await.ok()?,
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).ok()?];
            tcp.read_exact(&mut payload).await.ok()?;
            if h[0] & 15 == 8 {
                return Some(match payload[..] {
                    [a, b, ..] => u16::from_be_bytes([a, b]),
                    _ => 1005,
                });
            }
        }
    })
    .await
    .expect("the server ends the connection in time")
}

#[tokio::test]
async fn raw_protocol_violations_and_absurd_lengths_end_the_connection_only() {
    let s = Server::start().await;
    let ping = br#"{"type":"ping"}"#.to_vec();
    let mut absurd = wf(1, true, ping.clone());
    absurd.declared = Some(u64::MAX);
    let mut huge = wf(2, true, vec![]);
    huge.declared = Some(1 << 63);
    for (f, codes) in [(absurd, &[1009][..]), (huge, &[1009])] {
        let mut tcp = raw_socket(&s, 1).await;
        tcp.write_all(&f.encode()).await.unwrap();
        let code = raw_close(&mut tcp).await;
        assert!(code.is_some_and(|c| codes.contains(&c)), "{f:?}: {code:?}");
        still_serving(&s, "absurd length").await;
    }
    let mut unmasked = wf(1, true, ping.clone());
    unmasked.mask = None;
    let mut rsv = wf(1, true, ping.clone());
    rsv.rsv = 7;
    for f in [
        unmasked,
        rsv,
        wf(5, true, ping.clone()),
        wf(0, true, ping.clone()),
    ] {
        let mut tcp = raw_socket(&s, 1).await;
        tcp.write_all(&f.encode()).await.unwrap();
        // The session ends: with a close frame naming the protocol error (1002), or by
        // dropping the connection.
        let code = raw_close(&mut tcp).await;
        assert!(code.is_none_or(|c| c == 1002), "{f:?}: {code:?}");
        still_serving(&s, "protocol violation").await;
    }
    // Garbage instead of frames.
    let mut tcp = raw_socket(&s, 1).await;
    tcp.write_all(&[0xff; 4096]).await.unwrap();
    let _ = raw_close(&mut tcp).await;
    still_serving(&s, "garbage bytes").await;
}

#[tokio::test]
async fn hostile_tokens_and_bodies_over_http_get_contract_answers() {
    let s = Server::start().await;
    let future = now_secs() + 3600;
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    for token in [
        jwt(
            r#"{"alg":"none"}"#,
            &format!(r#"{{"sub":"1","dev":"d","exp":{future}}}"#),
            None,
        ),
        jwt(
            hs,
            &format!(r#"{{"sub":"0","dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(
            hs,
            &format!(r#"{{"sub":"-1","dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(
            hs,
            &format!(r#"{{"sub":"18446744073709551616","dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(
            hs,
            &format!(r#"{{"sub":1,"dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        jwt(
            hs,
            &format!(r#"{{"dev":"d","exp":{future}}}"#),
            Some(SECRET),
        ),
        "x".repeat(16 * 1024),
    ] {
        let r = s
            .http
            .get(s.url("/v1/conversations"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (st, body) = crate::support::status_json(r).await;
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{token:.80}"
        );
        let url = format!("ws://{}/v1/ws?token={token}", s.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("upgrade not refused: {:?}", other.map(|_| ())),
        }
    }
    let post = |body: Vec<u8>| {
        s.http
            .post(s.url("/v1/messages"))
            .bearer_auth(s.token(1, "http"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut not_utf8 = br#"{"id":"m","to":"u:2","body":"x"#.to_vec();
    not_utf8.extend([0xff, b'"', b'}']);
    for (body, status, code) in [
        (
            nested(10_000, "[", "0", "]").into_bytes(),
            400,
            "bad_request",
        ),
        (
            format!(
                r#"{{"id":"m","to":"u:2","body":{}}}"#,
                nested(10_000, "[", "0", "]")
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        (not_utf8, 400, "bad_request"),
        (
            br#"{"id":"\ud800","to":"u:2","body":"x"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (vec![b' '; 3 << 20], 413, "too_large"),
    ] {
        let (st, b) = crate::support::status_json(post(body).await.unwrap()).await;
        assert_eq!((st, b["error"]["code"].as_str()), (status, Some(code)));
    }
    still_serving(&s, "hostile HTTP").await;
}
