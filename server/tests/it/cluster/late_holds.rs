//! A node that learns of a hold late: what it stored for that user before went nowhere
//! live, so it tells the holder (`S`, seen), and the holder's devices read it from the
//! store. Both halves are shown with a real node and a real NATS: the sender's half with
//! the test speaking the control protocol as a node of its own, the holder's half with a
//! message stored by a server outside the cluster (one that relays nothing) on the same
//! schema.

use std::time::Duration;

use chat_server::cluster::wire::{CONTROL_SUBJECT, Control, HoldWire, Relay, node_subject};
use futures_util::StreamExt;
use serde_json::Value;

use super::support::{Backing, Namespace, Nats, backing, device, node, node_with};
use crate::support::{Server, WAIT, config};

/// The test's own cluster member: it speaks on `chat.cluster` and hears what nodes relay
/// to it.
struct Peer {
    client: async_nats::Client,
    relays: async_nats::Subscriber,
    name: &'static str,
}

impl Peer {
    async fn join(nats: &Nats, name: &'static str) -> Peer {
        let client = async_nats::connect(nats.url())
            .await
            .expect("NATS connects");
        let relays = client
            .subscribe(node_subject(name))
            .await
            .expect("subscribes");
        client.flush().await.expect("flushes");
        Peer {
            client,
            relays,
            name,
        }
    }

    async fn say(&self, c: &Control) {
        let bytes = serde_json::to_vec(c).unwrap();
        self.client
            .publish(CONTROL_SUBJECT, bytes.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    async fn holds(&self, changes: Vec<HoldWire>) {
        self.say(&Control::Holds {
            node: self.name.into(),
            inc: 1,
            changes,
        })
        .await;
    }

    /// The next relay of the given kind, skipping the others.
    async fn next(&mut self, seen: bool) -> Relay {
        loop {
            let msg = tokio::time::timeout(WAIT, self.relays.next())
                .await
                .expect("a relay in time")
                .expect("subscribed");
            let relay = Relay::decode(msg.payload).expect("a readable relay");
            if matches!(relay, Relay::Seen(_)) == seen {
                return relay;
            }
        }
    }
}

fn up(user: u64) -> HoldWire {
    HoldWire::Up { user, since: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_learns_of_a_hold_tells_the_holder_once() {
    let Some((nats, schema)) = backing(Backing::Postgres, "cluster_seen").await else {
        return;
    };
    let a = node(&nats, &schema, "a").await;
    let mut peer = Peer::join(&nats, "ghost").await;
    let mut sender = device(&a, 2, "d").await;
    // Stored while node a knows of no device of user 7 anywhere: relayed nowhere.
    sender.send_msg("early", "u:7", "before").await;
    peer.holds(vec![up(7)]).await;
    assert_eq!(peer.next(true).await, Relay::Seen(vec![7]));
    // From now on it relays, and a hold it already knows is not seen again.
    let sent = sender.send_msg("late", "u:7", "after").await;
    assert_eq!(sent["type"], "sent", "{sent}");
    match peer.next(false).await {
        Relay::Inbox(entries) => {
            assert_eq!(entries.len(), 1, "{entries:?}");
            assert_eq!(
                (entries[0].0, entries[0].1),
                (7, 2),
                "user 7's second position"
            );
        }
        other => panic!("an inbox relay, not {other:?}"),
    }
    peer.holds(vec![up(7), up(8)]).await;
    assert_eq!(peer.next(true).await, Relay::Seen(vec![8]));
    // A snapshot names holds too: only the one not known before is seen.
    peer.say(&Control::Snapshot {
        node: "ghost".into(),
        inc: 1,
        reset: true,
        users: vec![(7, 1), (9, 1)],
    })
    .await;
    assert_eq!(peer.next(true).await, Relay::Seen(vec![9]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seen_relay_catches_the_holders_devices_up_from_the_store() {
    let Some((nats, schema)) = backing(Backing::Postgres, "cluster_caught").await else {
        return;
    };
    let b = node(&nats, &schema, "b").await;
    let outside = outside_the_cluster(&schema).await;
    let mut receiver = device(&b, 1, "d").await;
    let mut sender = device(&outside, 2, "d").await;
    let sent = sender.send_msg("m1", "u:1", "stored, not relayed").await;
    assert_eq!(sent["type"], "sent", "{sent}");
    let quiet = receiver.drain(Duration::from_millis(800)).await;
    assert!(
        quiet.iter().all(|v| v["type"] != "msg"),
        "nothing brought it here live: {quiet:?}"
    );
    let peer = Peer::join(&nats, "ghost").await;
    peer.client
        .publish(node_subject("b"), Relay::Seen(vec![1]).encode())
        .await
        .unwrap();
    peer.client.flush().await.unwrap();
    let msg: Value = receiver.recv_type("msg").await;
    assert_eq!(
        (msg["id"].as_str(), msg["useq"].as_u64()),
        (Some("m1"), Some(1))
    );
}

/// A server on the same schema that is not in the cluster: it stores, and relays nothing.
async fn outside_the_cluster(schema: &Namespace) -> Server {
    let mut c = config();
    c.node = "outside".into();
    node_with(c, schema).await
}
