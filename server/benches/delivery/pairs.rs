//! One sender/receiver pair: the sender's loop (closed or open model) and the
//! receiver's checks of order and exactly-once, with their latency histograms and
//! per-second timelines.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;

use crate::common::Ws;

use crate::*;

/// A server frame, read without copying its strings (our ids and codes hold no escapes).
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type")]
    pub(crate) ty: &'a str,
    #[serde(default)]
    pub(crate) id: Option<&'a str>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default)]
    pub(crate) useq: Option<u64>,
    #[serde(default)]
    pub(crate) code: Option<&'a str>,
    #[serde(default, rename = "ref")]
    pub(crate) reference: Option<&'a str>,
}

/// A client message id, `<n>.<scheduled µs>.<actual µs>`: the sender's counter, the time
/// the send was meant to happen and the time it was made (equal in closed loop).
#[derive(Clone, Copy)]
pub(crate) struct MsgId {
    pub(crate) n: u64,
    pub(crate) scheduled: u64,
    pub(crate) actual: u64,
}

pub(crate) fn parse_id(id: &str) -> Option<MsgId> {
    let mut parts = id.splitn(3, '.');
    let mut next = || parts.next()?.parse().ok();
    Some(MsgId {
        n: next()?,
        scheduled: next()?,
        actual: next()?,
    })
}

/// Per-second figures over the phase, for `--timeline`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Second {
    pub(crate) delivered: u64,
    pub(crate) over_target: u64,
    pub(crate) max_us: u64,
}

pub(crate) fn merge_timeline(into: &mut Vec<Second>, from: &[Second]) {
    if into.len() < from.len() {
        into.resize(from.len(), Second::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.delivered += b.delivered;
        a.over_target += b.over_target;
        a.max_us = a.max_us.max(b.max_us);
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// What a sender tells its receiver when it stops.
#[derive(Clone, Copy, Default)]
pub(crate) struct SenderFinal {
    pub(crate) attempted: u64,
    pub(crate) errors: u64,
}

pub(crate) struct SenderOutcome {
    pub(crate) attempted: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) sent_in_window: u64,
    pub(crate) unacked: u64,
    /// Open model: sends scheduled within the window but never made (fell behind).
    pub(crate) behind: u64,
    pub(crate) send_to_sent: Histogram<u64>,
    /// Open model: actual send time less scheduled time (client lag or a full window).
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) violations: Violations,
    pub(crate) problem: Option<String>,
}

#[derive(Default)]
pub(crate) struct Violations {
    pub(crate) count: u64,
    pub(crate) first: Vec<String>,
}

impl Violations {
    pub(crate) fn add(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what);
        }
    }
}

pub(crate) struct ReceiverOutcome {
    pub(crate) delivered: u64,
    pub(crate) delivered_in_window: u64,
    pub(crate) send_to_delivery: Histogram<u64>,
    /// From the actual send time (differs from the above in the open model only).
    pub(crate) actual_to_delivery: Histogram<u64>,
    pub(crate) timeline: Vec<Second>,
    pub(crate) violations: Violations,
    /// What the sender made and had refused, once it stopped.
    pub(crate) expected: Option<SenderFinal>,
    pub(crate) problem: Option<String>,
}

pub(crate) async fn sender(
    pair: usize,
    ws: Ws,
    spec: PhaseSpec,
    clock: Arc<Clock>,
    body: Arc<str>,
    done: oneshot::Sender<SenderFinal>,
) -> SenderOutcome {
    let peer = 2 * pair as u64 + 2;
    let (mut sink, mut stream) = ws.split();
    let open = spec.rate > 0.0;
    // Open model: pair k sends at offset + i·interval, offsets spread over one interval.
    let interval_us = if open {
        spec.pairs as f64 * 1e6 / spec.rate
    } else {
        0.0
    };
    let offset_us = interval_us * pair as f64 / spec.pairs as f64;
    let scheduled = |n: u64| (offset_us + n as f64 * interval_us) as u64;
    let mut out = SenderOutcome {
        attempted: 0,
        acked: 0,
        errors: 0,
        sent_in_window: 0,
        unacked: 0,
        behind: 0,
        send_to_sent: histogram(),
        send_lag: histogram(),
        violations: Violations::default(),
        problem: None,
    };
    let mut in_flight = 0usize;
    let mut stopped = false;
    let give_up = clock.at(clock.give_up_us);
    loop {
        if stopped && in_flight == 0 {
            break;
        }
        let can_send = !stopped && in_flight < spec.window;
        let next_us = scheduled(out.attempted);
        // Open model: wait for the scheduled time; closed loop: only for the start.
        let wait_until = if open {
            Some(clock.at(next_us))
        } else if out.attempted == 0 {
            Some(clock.t0)
        } else {
            None
        };
        let ready = async move {
            if let Some(t) = wait_until {
                sleep_until(t).await;
            }
        };
        tokio::select! {
            biased;
            frame = stream.next() => {
                let text = match text_of(frame) {
                    Ok(Some(t)) => t,
                    Ok(None) => continue,
                    Err(why) => {
                        out.problem = Some(format!("sender {pair}: {why}"));
                        break;
                    }
                };
                let now = clock.now_us();
                match serde_json::from_str::<Incoming>(text.as_str()) {
                    Ok(f) if f.ty == "sent" => {
                        in_flight = in_flight.saturating_sub(1);
                        out.acked += 1;
                        match f.id.and_then(parse_id) {
                            Some(id) => {
                                if id.scheduled >= clock.from_us {
                                    out.send_to_sent.saturating_record(now.saturating_sub(id.scheduled));
                                }
                                // Answers come in send order; this sender alone writes the
                                // conversation and its own inbox, so seq = useq = n + 1
                                // (less the sends refused before).
                                let stored = id.n + 1 - out.errors.min(id.n);
                                if id.n + 1 != out.acked + out.errors
                                    || f.seq != Some(stored)
                                    || f.useq != Some(stored)
                                {
                                    out.violations.add(format!(
                                        "sender {pair}: answer #{} is {}",
                                        out.acked + out.errors,
                                        text.as_str()
                                    ));
                                }
                            }
                            None => out.violations.add(format!("sender {pair}: foreign id in {}", text.as_str())),
                        }
                    }
                    Ok(f) if f.ty == "error" => {
                        out.errors += 1;
                        if f.reference.is_some() {
                            in_flight = in_flight.saturating_sub(1);
                        }
                        if out.problem.is_none() {
                            out.problem = Some(format!(
                                "sender {pair}: error {} for {:?}: {}",
                                f.code.unwrap_or("?"),
                                f.reference,
                                text.as_str()
                            ));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if out.problem.is_none() {
                            out.problem = Some(format!("sender {pair}: unreadable frame ({e}): {}", text.as_str()));
                        }
                    }
                }
            }
            () = ready, if can_send => {
                let now = clock.now_us();
                let intended = if open { next_us } else { now };
                if intended >= clock.to_us || now >= clock.give_up_us {
                    stopped = true;
                    if open {
                        // Scheduled within the window but never sent: the sender fell behind.
                        let mut n = out.attempted;
                        while scheduled(n) < clock.to_us {
                            out.behind += 1;
                            n += 1;
                        }
                    }
                    continue;
                }
                let mut frame = String::with_capacity(body.len() + 80);
                let _ = write!(
                    frame,
                    r#"{{"type":"send","id":"{}.{}.{}","to":"u:{}","body":""#,
                    out.attempted, intended, now, peer
                );
                frame.push_str(&body);
                frame.push_str("\"}");
                // Bounded: a server that stops reading must not hang the benchmark.
                match tokio::time::timeout_at(give_up, sink.send(Message::text(frame))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        out.problem = Some(format!("sender {pair}: send failed: {e}"));
                        break;
                    }
                    Err(_) => {
                        out.problem = Some(format!("sender {pair}: a send blocked past the drain time"));
                        break;
                    }
                }
                out.attempted += 1;
                in_flight += 1;
                if clock.in_window(intended) {
                    out.sent_in_window += 1;
                    if open {
                        out.send_lag.saturating_record(now.saturating_sub(intended));
                    }
                }
            }
            () = sleep_until(give_up), if stopped => break,
        }
    }
    out.unacked = in_flight as u64;
    let _ = done.send(SenderFinal {
        attempted: out.attempted,
        errors: out.errors,
    });
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    out
}

pub(crate) async fn receiver(
    pair: usize,
    ws: Ws,
    clock: Arc<Clock>,
    mut done: oneshot::Receiver<SenderFinal>,
) -> ReceiverOutcome {
    let (mut sink, mut stream) = ws.split();
    let mut out = ReceiverOutcome {
        delivered: 0,
        delivered_in_window: 0,
        send_to_delivery: histogram(),
        actual_to_delivery: histogram(),
        timeline: Vec::new(),
        violations: Violations::default(),
        expected: None,
        problem: None,
    };
    let mut next_n = 0u64;
    let mut last_seq = 0u64;
    let mut last_useq = 0u64;
    // Receivers outwait the senders a little: the last `msg` may trail the last `sent`.
    let give_up = clock.at(clock.give_up_us) + Duration::from_secs(1);
    let complete = |out: &ReceiverOutcome| {
        out.expected
            .is_some_and(|f| out.delivered >= f.attempted.saturating_sub(f.errors))
    };
    loop {
        tokio::select! {
            biased;
            frame = stream.next() => {
                let text = match text_of(frame) {
                    Ok(Some(t)) => t,
                    Ok(None) => continue,
                    Err(why) => {
                        out.problem = Some(format!("receiver {pair}: {why}"));
                        break;
                    }
                };
                let now = clock.now_us();
                let f = match serde_json::from_str::<Incoming>(text.as_str()) {
                    Ok(f) => f,
                    Err(e) => {
                        out.violations.add(format!("receiver {pair}: unreadable frame ({e}): {}", text.as_str()));
                        continue;
                    }
                };
                if f.ty != "msg" {
                    out.violations.add(format!("receiver {pair}: unexpected frame {}", text.as_str()));
                    continue;
                }
                out.delivered += 1;
                if clock.in_window(now) {
                    out.delivered_in_window += 1;
                }
                match f.id.and_then(parse_id) {
                    Some(MsgId { n, scheduled, actual }) => {
                        if n < next_n {
                            out.violations.add(format!("receiver {pair}: message {n} again or out of order (expected {next_n})"));
                        } else {
                            if n > next_n {
                                out.violations.add(format!("receiver {pair}: messages {next_n}..{n} skipped"));
                            }
                            next_n = n + 1;
                        }
                        let latency = now.saturating_sub(scheduled);
                        if scheduled >= clock.from_us {
                            out.send_to_delivery.saturating_record(latency);
                            out.actual_to_delivery.saturating_record(now.saturating_sub(actual));
                        }
                        let second = (scheduled / 1_000_000) as usize;
                        if out.timeline.len() <= second {
                            out.timeline.resize(second + 1, Second::default());
                        }
                        let b = &mut out.timeline[second];
                        b.delivered += 1;
                        b.max_us = b.max_us.max(latency);
                        if latency > (TIMELINE_MARK_MS * 1000.0) as u64 {
                            b.over_target += 1;
                        }
                    }
                    None => out.violations.add(format!("receiver {pair}: foreign id in {}", text.as_str())),
                }
                match f.useq {
                    Some(u) if u == last_useq + 1 => last_useq = u,
                    u => {
                        out.violations.add(format!("receiver {pair}: useq {u:?} after {last_useq}"));
                        if let Some(u) = u {
                            last_useq = u;
                        }
                    }
                }
                match f.seq {
                    Some(s) if s == last_seq + 1 => last_seq = s,
                    s => {
                        out.violations.add(format!("receiver {pair}: seq {s:?} after {last_seq}"));
                        if let Some(s) = s {
                            last_seq = s;
                        }
                    }
                }
                if complete(&out) {
                    break;
                }
            }
            f = &mut done, if out.expected.is_none() => {
                out.expected = Some(f.unwrap_or_default());
                if complete(&out) {
                    break;
                }
            }
            () = sleep_until(give_up) => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    out
}

/// The text of a frame from the server; `Ok(None)` for a control frame to pass over, and
/// why the connection is over otherwise.
fn text_of(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>, String> {
    match frame {
        Some(Ok(Message::Text(t))) => Ok(Some(t)),
        Some(Ok(Message::Close(c))) => Err(format!("closed by the server: {c:?}")),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(format!("socket error: {e}")),
        None => Err("connection ended".into()),
    }
}
