//! Sends a device pipelined: when a `send` arrives with more `send`s already read from
//! the socket behind it, they are stored in one call ([`Service::send_all`]) and answered
//! together, in their order. A device that keeps several sends unanswered (as a busy
//! client or a load generator does) then costs one store batch, one wake-up and one write
//! of its answers per burst instead of one each. Its sends are still sequenced in the
//! order it sent them.

use std::future::Future;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{FutureExt, StreamExt};

use super::Handled;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::protocol::{ClientFrame, SentOut, ServerFrame};
use crate::service::{Device, SendRequest, Service};

/// Sends stored in one call at most.
const MAX_PIPELINED: usize = 32;

/// What the socket gave next, as [`StreamExt::next`] gives it.
pub(super) type Next = Option<Result<Message, axum::Error>>;

/// Takes the `send`s already waiting behind `first` from the socket, without waiting for
/// any. Returns them with the first item that is not a `send`, if one was read (the
/// caller handles it next).
pub(super) fn gather(
    first: SendRequest,
    stream: &mut WebSocket,
) -> (Vec<SendRequest>, Option<Next>) {
    let mut sends = vec![first];
    while sends.len() < MAX_PIPELINED {
        let Some(next) = stream.next().now_or_never() else {
            break;
        };
        if let Some(Ok(Message::Text(t))) = &next
            && let Ok(ClientFrame::Send { id, to, body }) = ClientFrame::decode(t)
        {
            sends.push(SendRequest { id, to, body });
            continue;
        }
        return (sends, Some(next));
    }
    (sends, None)
}

/// Stores `sends` and gives their answers, in their order. The sends count as under way
/// from this call, not from the future's first poll: the session may read the live
/// stream from the store in between, and that read must know of them.
pub(super) fn answer<'a>(
    svc: &'a Service,
    who: &'a Identity,
    me: &'a Device,
    sends: Vec<SendRequest>,
) -> impl Future<Output = Vec<Handled>> + Send + 'a {
    let own = &me.handle.own;
    own.begin();
    async move {
        let ids: Vec<String> = sends.iter().map(|s| s.id.as_str().to_owned()).collect();
        let results = svc.send_all(who, sends, Some(me.conn())).await;
        own.end();
        answers(ids, results)
    }
}

/// The `sent` or `error` frame of each send, in their order.
fn answers(ids: Vec<String>, results: Vec<Result<SentOut, ApiError>>) -> Vec<Handled> {
    ids.into_iter()
        .zip(results)
        .map(|(id, result)| match result {
            Ok(sent) => Ok(Some(
                ServerFrame::Sent {
                    id: &id,
                    sent: &sent,
                }
                .to_json()
                .into(),
            )),
            Err(e) => Err((e, Some(serde_json::Value::String(id)))),
        })
        .collect()
}
