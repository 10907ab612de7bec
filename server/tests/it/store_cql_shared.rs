//! The CQL store in shared mode (`?shared=true`, what `serve --cluster` opens) against a
//! real Cassandra: the conformance suite, and two store instances over one keyspace, as
//! two nodes have, writing the same conversations, the same inboxes, the same group and
//! the same markers at once, with sends retried on the other instance under the same id.
//! And a keyspace sequenced one way refuses to be opened the other way.
//!
//! Like `store_cql`: skipped when no Cassandra answers, a failure under `CI=true`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chat_server::model::ConvId;
use chat_server::store::conformance::Subject;
use chat_server::store::{
    AppendRequest, Appended, CqlStore, DeadLetter, GroupStore, Marker, MemberChange, MessageStore,
    PushStore, StoreError,
};

use crate::store_cql::{Keyspace, unreachable};

fn shared(ks: &Keyspace) -> String {
    format!("{}?shared=true", ks.spec())
}

/// Keeps the keyspace (and the node) until the suite's check ends.
struct Holds {
    _ks: Keyspace,
}

async fn fresh() -> Subject {
    let ks = Keyspace::new("shconf").await.expect("the node answers");
    let store = Arc::new(
        CqlStore::open(&shared(&ks))
            .await
            .expect("open the shared cql store"),
    );
    Subject {
        store,
        guard: Box::new(Holds { _ks: ks }),
    }
}

mod conformance {
    use super::*;

    chat_server::store_conformance!({
        if unreachable().is_some() {
            return;
        }
        fresh()
    });
}

fn req(conv: ConvId, from: u64, id: &str) -> AppendRequest {
    AppendRequest {
        conv,
        from,
        id: id.parse().unwrap(),
        body: format!("body of {id}"),
        ts: chat_server::model::now_ms(),
    }
}

/// What one instance acknowledged: (sender, id) → outcome.
type Acks = BTreeMap<(u64, String), Appended>;

/// Sends `n` messages from `from` into `convs` in turn through `store`; every third is
/// sent again through `other` with the same id, at the same time, as a client retrying
/// on another node would.
async fn sender(
    store: Arc<CqlStore>,
    other: Arc<CqlStore>,
    from: u64,
    tag: String,
    convs: Vec<ConvId>,
    n: usize,
) -> Acks {
    let mut acks = Acks::new();
    for i in 0..n {
        let conv = convs[i % convs.len()];
        let id = format!("{tag}-{i}");
        let first = append(&store, req(conv, from, &id));
        let outcome = if i % 3 == 0 {
            let retry = append(&other, req(conv, from, &id));
            let ((a, a_tries), (b, b_tries)) = tokio::join!(first, retry);
            assert_eq!(
                (a.conv, a.seq, a.useq),
                (b.conv, b.seq, b.useq),
                "{id}: a retry on the other node gets the first outcome"
            );
            if a_tries == 1 && b_tries == 1 {
                // With an attempt that failed, its unknown outcome may be the one stored.
                assert!(
                    a.duplicate != b.duplicate,
                    "{id}: exactly one of the two stored it"
                );
            }
            a
        } else {
            first.await.0
        };
        acks.insert((from, id), outcome);
    }
    acks
}

/// Appends as a client does: an `unavailable` answer (a Cassandra request that timed out
/// on a loaded host) is retried with the same id. Answers the outcome and the attempts.
async fn append(store: &CqlStore, req: AppendRequest) -> (Appended, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        match store.append(req.clone()).await {
            Ok(a) => return (a, tries),
            Err(StoreError::Unavailable(e)) if tries < 5 => {
                eprintln!("append {:?} unavailable, retried: {e}", req.id);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("append {:?}: {e}", req.id),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_keep_one_gap_free_sequence_and_inbox() {
    let Some(ks) = Keyspace::new("shtwo").await else {
        return;
    };
    let a = Arc::new(CqlStore::open(&shared(&ks)).await.expect("open a"));
    let b = Arc::new(CqlStore::open(&shared(&ks)).await.expect("open b"));
    let group = a.create_group("g".into(), 1, vec![2, 3, 4]).await.unwrap();
    let g = ConvId::Group(group.id);
    let d = |x, y| ConvId::direct(x, y).unwrap();
    let per_sender = 24;
    // Users 1-4 write one group and crossing direct conversations, each from both nodes.
    let plan: Vec<(u64, Vec<ConvId>)> = vec![
        (1, vec![g, d(1, 2), d(1, 3)]),
        (2, vec![d(1, 2), g, d(2, 3)]),
        (3, vec![d(1, 3), d(2, 3), g]),
        (4, vec![g, d(4, 1)]),
    ];
    let mut tasks = Vec::new();
    for (from, convs) in &plan {
        for (i, (x, y)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            tasks.push(tokio::spawn(sender(
                x.clone(),
                y.clone(),
                *from,
                format!("u{from}n{i}"),
                convs.clone(),
                per_sender,
            )));
        }
    }
    // Meanwhile: dead letters from both nodes, read markers of one user from both nodes.
    let letters: Vec<_> = [&a, &b]
        .into_iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let letter = DeadLetter {
                        payload: format!("p{i}"),
                        error: "e".into(),
                        ts: 1,
                    };
                    ids.push(s.put_dead_letter(letter).await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut acks = Acks::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    let mut dead_ids = BTreeSet::new();
    for t in letters {
        for id in t.await.unwrap() {
            assert!(dead_ids.insert(id), "dead-letter id {id} handed out twice");
        }
    }
    assert_eq!(dead_ids, (1..=20).collect(), "dead-letter ids are gap-free");
    assert_eq!(b.dead_letters(0, 100).await.unwrap().len(), 20);

    // One gap-free sequence per conversation, every acknowledged send at its seq.
    let mut convs: BTreeMap<ConvId, Vec<(u64, String)>> = BTreeMap::new();
    for ((from, id), ack) in &acks {
        convs.entry(ack.conv).or_default().push((*from, id.clone()));
    }
    let mut participants: HashMap<ConvId, Vec<u64>> = HashMap::new();
    for (conv, sent) in &convs {
        let hist = a.history(*conv, None, 1000).await.unwrap();
        let seqs: Vec<u64> = hist.iter().rev().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=sent.len() as u64).collect::<Vec<_>>(),
            "{conv}: one gap-free sequence, nothing duplicated"
        );
        for m in &hist {
            let ack = &acks[&(m.from, m.id.clone())];
            assert_eq!((ack.conv, ack.seq), (*conv, m.seq), "{conv} {}", m.id);
        }
        participants.insert(
            *conv,
            match conv {
                ConvId::Direct { lo, hi } => vec![*lo, *hi],
                ConvId::Group(_) => vec![1, 2, 3, 4],
            },
        );
    }
    // One gap-free inbox per user holding each message of their conversations once.
    for user in 1..=4u64 {
        let inbox = b.inbox(user, 0, 10_000).await.unwrap();
        let useqs: Vec<u64> = inbox.iter().map(|i| i.useq).collect();
        assert_eq!(
            useqs,
            (1..=inbox.len() as u64).collect::<Vec<_>>(),
            "user {user}: a gap-free inbox"
        );
        let got: BTreeSet<(ConvId, u64)> = inbox.iter().map(|i| (i.msg.conv, i.msg.seq)).collect();
        assert_eq!(got.len(), inbox.len(), "user {user}: no message twice");
        let want: BTreeSet<(ConvId, u64)> = acks
            .values()
            .filter(|ack| participants[&ack.conv].contains(&user))
            .map(|ack| (ack.conv, ack.seq))
            .collect();
        assert_eq!(
            got, want,
            "user {user}: every message of their conversations"
        );
        for item in &inbox {
            if item.msg.from == user {
                let ack = &acks[&(user, item.msg.id.clone())];
                assert_eq!(
                    ack.useq, item.useq,
                    "the sender's useq is its inbox position"
                );
            }
        }
    }
    // Markers moved from both nodes at once end at the highest; membership stays whole.
    let last = a.history(g, None, 1).await.unwrap()[0].seq;
    let marks: Vec<_> = (1..=last)
        .map(|seq| {
            let s = if seq % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.mark(2, g, Marker::Read, seq).await.unwrap() })
        })
        .collect();
    for m in marks {
        m.await.unwrap();
    }
    let list = a.conversations(2, 100).await.unwrap();
    let summary = list
        .iter()
        .find(|c| c.conv == g)
        .expect("the group is listed");
    assert_eq!(
        summary.read_seq, last,
        "the read marker is the highest marked"
    );
    let (x, y) = tokio::join!(
        a.change_members(
            group.id,
            MemberChange::Add {
                by: 1,
                user: 5,
                max_members: 256
            }
        ),
        b.change_members(group.id, MemberChange::Remove { by: 1, user: 4 }),
    );
    x.unwrap();
    y.unwrap();
    let mut members = b.group(group.id).await.unwrap().unwrap().members;
    members.sort_unstable();
    assert_eq!(members, vec![1, 2, 3, 5], "both changes, neither lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_is_sequenced_one_way() {
    let Some(ks) = Keyspace::new("shmode").await else {
        return;
    };
    let single = CqlStore::open(&ks.spec()).await.expect("open single-node");
    single
        .append(req(ConvId::direct(1, 2).unwrap(), 1, "x"))
        .await
        .unwrap();
    let refused = CqlStore::open(&shared(&ks)).await.err().expect("refused");
    assert!(refused.to_string().contains("single-node"), "{refused}");
    drop(single);
    let Some(ks2) = Keyspace::new("shmode").await else {
        return;
    };
    let cluster = CqlStore::open(&shared(&ks2)).await.expect("open shared");
    cluster
        .append(req(ConvId::direct(1, 2).unwrap(), 1, "x"))
        .await
        .unwrap();
    let refused = CqlStore::open(&ks2.spec()).await.err().expect("refused");
    assert!(refused.to_string().contains("shared=true"), "{refused}");
}
