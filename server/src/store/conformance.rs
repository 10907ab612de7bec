//! The conformance suite every [`Store`] backend must pass unchanged.
//!
//! Each check is a plain async function taking a fresh, empty store. A backend's test file
//! instantiates all of them with [`store_conformance!`](crate::store_conformance), giving a
//! factory that yields a [`Subject`]:
//!
//! ```ignore
//! chat_server::store_conformance!(async { Subject::new(Arc::new(MemoryStore::new())) });
//! ```
//!
//! The checks panic (as tests do) when a backend breaks the contract.

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    AppendRequest, DeadLetter, Marker, MemberChange, PushRegistration, Refusal, Store, StoreError,
};
use crate::model::{ConvId, UserId};

/// A store under test and whatever must live as long as it (a temporary directory).
pub struct Subject {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn std::any::Any + Send>,
}

impl Subject {
    /// A subject that needs nothing kept alive beside the store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Subject {
            store,
            guard: Box::new(()),
        }
    }
}

/// A send of `body` from `from` to `to` under the client id `id`, stamped now.
pub fn req(from: UserId, to: UserId, id: &str, body: &str) -> AppendRequest {
    let conv = ConvId::direct(from, to).expect("distinct users");
    AppendRequest {
        conv,
        from,
        id: id.parse().expect("valid id"),
        body: body.into(),
        ts: crate::model::now_ms(),
    }
}

fn group_req(from: UserId, group: u64, id: &str) -> AppendRequest {
    AppendRequest {
        conv: ConvId::Group(group),
        from,
        id: id.parse().expect("valid id"),
        body: format!("group body {id}"),
        ts: crate::model::now_ms(),
    }
}

/// Seqs start at 1 and grow by one per conversation; each participant's useq grows by one
/// per message of any of their conversations; the sender's useq is returned.
pub async fn sequences_start_at_one_and_grow_by_one(s: Arc<dyn Store>) {
    let a = s.append(req(1, 2, "m1", "hello")).await.unwrap();
    assert_eq!((a.seq, a.useq, a.duplicate), (1, 1, false));
    assert_eq!(a.inboxes, vec![(1, 1), (2, 1)]);
    let b = s.append(req(2, 1, "m1", "hi")).await.unwrap();
    assert_eq!((b.seq, b.useq), (2, 2), "same conversation, other sender");
    assert_eq!(b.inboxes, vec![(2, 2), (1, 2)]);
    let c = s.append(req(1, 3, "m2", "other chat")).await.unwrap();
    assert_eq!((c.seq, c.useq), (1, 3), "new conversation starts at 1");
    assert_eq!(c.inboxes, vec![(1, 3), (3, 1)]);
    assert_eq!(s.inbox_head(1).await.unwrap(), 3);
    assert_eq!(s.inbox_head(2).await.unwrap(), 2);
    assert_eq!(s.inbox_head(3).await.unwrap(), 1);
    assert_eq!(s.inbox_head(99).await.unwrap(), 0);
}

/// Repeating (sender, id) returns the first outcome and stores nothing; the same id from
/// another user is a different message.
pub async fn repeated_ids_are_idempotent(s: Arc<dyn Store>) {
    let first = s.append(req(1, 2, "same", "one")).await.unwrap();
    let again = s.append(req(1, 2, "same", "changed body")).await.unwrap();
    assert!(again.duplicate);
    assert!(again.inboxes.is_empty());
    assert_eq!(
        (again.conv, again.seq, again.useq, again.ts),
        (first.conv, first.seq, first.useq, first.ts)
    );
    // Even when retried towards another conversation, the first outcome stands.
    let elsewhere = s.append(req(1, 5, "same", "x")).await.unwrap();
    assert!(elsewhere.duplicate);
    assert_eq!(elsewhere.conv, first.conv);
    let other_user = s.append(req(2, 1, "same", "two")).await.unwrap();
    assert!(!other_user.duplicate);
    assert_eq!(other_user.seq, 2);
    let hist = s.history(first.conv, None, 10).await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[1].body, "one");
    assert_eq!(s.inbox_head(1).await.unwrap(), 2);
    assert!(
        s.history(ConvId::direct(1, 5).unwrap(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Several requests in one `append_all`: each answered as `append` alone would answer it,
/// sequenced in the order given, a refusal or a duplicate in the middle changing nothing
/// for the others.
pub async fn append_all_answers_each_in_order(s: Arc<dyn Store>) {
    let out = s
        .append_all(vec![
            req(1, 2, "p1", "one"),
            req(1, 2, "p2", "two"),
            req(1, 2, "p1", "again"),
            group_req(1, 999, "nogroup"),
            req(1, 3, "p3", "elsewhere"),
        ])
        .await;
    assert_eq!(out.len(), 5);
    let ok = |i: usize| out[i].as_ref().expect("stored");
    assert_eq!((ok(0).seq, ok(0).useq, ok(0).duplicate), (1, 1, false));
    assert_eq!((ok(1).seq, ok(1).useq, ok(1).duplicate), (2, 2, false));
    assert_eq!((ok(2).seq, ok(2).useq, ok(2).duplicate), (1, 1, true));
    assert!(
        matches!(out[3], Err(StoreError::Refused(_))),
        "{:?}",
        out[3]
    );
    assert_eq!((ok(4).seq, ok(4).useq), (1, 3));
    let hist = s.history(ok(0).conv, None, 10).await.unwrap();
    let bodies: Vec<&str> = hist.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["two", "one"]);
    assert_eq!(s.inbox_head(1).await.unwrap(), 3);
    assert!(s.append_all(Vec::new()).await.is_empty());
}

/// Many concurrent senders in one conversation: seqs are exactly 1..=N, every inbox is
/// gap-free, and the history lists each message once.
pub async fn concurrent_appends_are_gap_free(s: Arc<dyn Store>) {
    const SENDERS: u64 = 8;
    const EACH: u64 = 40;
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                // Users 1 and 2 cross messages, as in the source design's M1/M2 example.
                let (from, to) = if sender % 2 == 0 { (1, 2) } else { (2, 1) };
                let id = format!("s{sender}-{i}");
                seqs.push(s.append(req(from, to, &id, &id)).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = SENDERS * EACH;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    for user in [1, 2] {
        let items = s.inbox(user, 0, 10_000).await.unwrap();
        let useqs: Vec<u64> = items.iter().map(|i| i.useq).collect();
        assert_eq!(useqs, (1..=n).collect::<Vec<_>>());
        let seqs: Vec<u64> = items.iter().map(|i| i.msg.seq).collect();
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "one order in every inbox"
        );
    }
    let conv = ConvId::direct(1, 2).unwrap();
    let hist = s.history(conv, None, 10_000).await.unwrap();
    let ids: HashSet<&str> = hist.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len() as u64, n);
}

/// History pages go newest first, honour `before` and `limit`, and end at seq 1.
pub async fn history_pages_newest_first(s: Arc<dyn Store>) {
    for i in 1..=25 {
        s.append(req(1, 2, &format!("h{i}"), &format!("body {i}")))
            .await
            .unwrap();
    }
    s.append(req(2, 3, "noise", "elsewhere")).await.unwrap();
    let conv = ConvId::direct(1, 2).unwrap();
    let page = s.history(conv, None, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (16..=25).rev().collect::<Vec<_>>()
    );
    assert_eq!(page[0].body, "body 25");
    assert_eq!(page[0].id, "h25");
    assert_eq!(page[0].from, 1);
    assert_eq!(page[0].conv, conv);
    let older = s.history(conv, Some(16), 10).await.unwrap();
    assert_eq!(older.first().map(|m| m.seq), Some(15));
    let last = s.history(conv, Some(6), 10).await.unwrap();
    assert_eq!(
        last.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    assert!(s.history(conv, Some(1), 10).await.unwrap().is_empty());
    assert!(
        s.history(ConvId::direct(7, 8).unwrap(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The inbox returns exactly the entries after `after`, oldest first, across conversations,
/// each pointing at its stored message.
pub async fn inbox_reads_after_a_position(s: Arc<dyn Store>) {
    for i in 0..10 {
        let peer = 2 + (i % 3);
        s.append(req(1, peer, &format!("i{i}"), &format!("to {peer} #{i}")))
            .await
            .unwrap();
    }
    let all = s.inbox(1, 0, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    for (k, item) in all.iter().enumerate() {
        assert_eq!(item.useq, k as u64 + 1);
        assert_eq!(item.msg.id, format!("i{k}"));
        assert_eq!(
            item.msg.conv,
            ConvId::direct(1, 2 + (k as u64 % 3)).unwrap()
        );
    }
    let page = s.inbox(1, 4, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|i| i.useq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert!(s.inbox(1, 10, 100).await.unwrap().is_empty());
    assert!(s.inbox(1, u64::MAX, 100).await.unwrap().is_empty());
    let of_3 = s.inbox(3, 0, 100).await.unwrap();
    assert_eq!(
        of_3.iter().map(|i| (i.useq, i.msg.seq)).collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 3)]
    );
}

/// Markers only move forward, cannot pass the last message, and a read moves the ack.
pub async fn markers_are_cumulative(s: Arc<dyn Store>) {
    let conv = ConvId::direct(1, 2).unwrap();
    for i in 0..5 {
        s.append(req(1, 2, &format!("k{i}"), "x")).await.unwrap();
    }
    let m = s.mark(2, conv, Marker::Ack, 3).await.unwrap();
    assert_eq!((m.before, m.after), (0, 3));
    let m = s.mark(2, conv, Marker::Ack, 2).await.unwrap();
    assert_eq!((m.before, m.after), (3, 3), "never backwards");
    assert!(matches!(
        s.mark(2, conv, Marker::Ack, 6).await,
        Err(StoreError::Refused(Refusal::BeyondLast { .. }))
    ));
    let m = s.mark(2, conv, Marker::Read, 4).await.unwrap();
    assert_eq!((m.before, m.after), (0, 4));
    let m = s.mark(2, conv, Marker::Ack, 4).await.unwrap();
    assert_eq!((m.before, m.after), (4, 4), "reading implies delivery");
    let list = s.conversations(2, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].read_seq, list[0].ack_seq), (4, 4));
    assert_eq!(list[0].unread, 1);
    // A marker reports the user's newest own message as it stood when it moved.
    assert_eq!(m.last_own, 0, "user 2 sent nothing");
    s.append(req(2, 1, "back", "x")).await.unwrap();
    let m = s.mark(2, conv, Marker::Ack, 6).await.unwrap();
    assert_eq!((m.after, m.last_own), (6, 6));
    let m = s.mark(1, conv, Marker::Ack, 6).await.unwrap();
    assert_eq!((m.after, m.last_own), (6, 5));
}

/// The conversation list: most recent first, `unread` from the read marker, the sender's
/// own messages never unread, `limit` honoured.
pub async fn conversations_most_recent_first(s: Arc<dyn Store>) {
    let mut r = req(2, 1, "c1", "a");
    r.ts = 1000;
    s.append(r).await.unwrap();
    let mut r = req(3, 1, "c2", "b");
    r.ts = 3000;
    s.append(r).await.unwrap();
    let mut r = req(3, 1, "c3", "c");
    r.ts = 3001;
    s.append(r).await.unwrap();
    let mut r = req(1, 4, "c4", "d");
    r.ts = 2000;
    s.append(r).await.unwrap();
    let list = s.conversations(1, 10).await.unwrap();
    let got: Vec<(String, u64, u64, u64)> = list
        .iter()
        .map(|c| (c.conv.to_string(), c.last_seq, c.last_ts, c.unread))
        .collect();
    assert_eq!(
        got,
        vec![
            ("d:1:3".into(), 2, 3001, 2),
            ("d:1:4".into(), 1, 2000, 0),
            ("d:1:2".into(), 1, 1000, 1),
        ]
    );
    assert_eq!(s.conversations(1, 2).await.unwrap().len(), 2);
    assert_eq!(s.conversations(3, 10).await.unwrap()[0].unread, 0);
    assert!(s.conversations(42, 10).await.unwrap().is_empty());
    // A reply does not count as unread for its sender, and does not mark the messages it
    // crossed as read.
    let conv = ConvId::direct(1, 3).unwrap();
    let mut r = req(1, 3, "c5", "reply");
    r.ts = 4000;
    s.append(r).await.unwrap();
    let top = &s.conversations(1, 1).await.unwrap()[0];
    assert_eq!((top.conv, top.last_seq, top.unread), (conv, 3, 2));
    // Reading up to the first message leaves one from user 3 unread; user 1's own reply
    // after the marker never counts.
    s.mark(1, conv, Marker::Read, 1).await.unwrap();
    assert_eq!(s.conversations(1, 1).await.unwrap()[0].unread, 1);
    s.append(req(3, 1, "c6", "more")).await.unwrap();
    assert_eq!(s.conversations(1, 1).await.unwrap()[0].unread, 2);
    s.mark(1, conv, Marker::Read, 4).await.unwrap();
    assert_eq!(s.conversations(1, 1).await.unwrap()[0].unread, 0);
    // The other side sees only the reply as unread, not its own messages.
    assert_eq!(s.conversations(3, 10).await.unwrap()[0].unread, 1);
}

/// Bodies and ids come back byte for byte: multi-byte UTF-8, the largest body, odd ids.
pub async fn contents_round_trip(s: Arc<dyn Store>) {
    let big = "é".repeat(2048);
    let bodies = ["héllo 👋 世界", "\"quoted\" \\ back\nslash", big.as_str()];
    let ts = 1_700_000_000_000;
    for (i, body) in bodies.iter().enumerate() {
        let mut r = req(1, 2, &format!("id ~!{i}"), body);
        r.ts = ts;
        s.append(r).await.unwrap();
    }
    let hist = s
        .history(ConvId::direct(1, 2).unwrap(), None, 10)
        .await
        .unwrap();
    let mut got: Vec<&str> = hist.iter().map(|m| m.body.as_str()).collect();
    got.reverse();
    assert_eq!(got, bodies);
    assert_eq!(hist[2].id, "id ~!0");
    assert_eq!(hist[0].ts, ts);
}

/// A durable backend reports its size on disk, and it grows with what is stored.
pub async fn disk_usage_grows(s: Arc<dyn Store>) {
    let Some(before) = s.disk_bytes().await.unwrap() else {
        return; // not a disk backend
    };
    for i in 0..200 {
        s.append(req(1, 2, &format!("d{i}"), &"x".repeat(100)))
            .await
            .unwrap();
    }
    let after = s.disk_bytes().await.unwrap().unwrap_or(0);
    assert!(after > before, "disk usage {before} -> {after}");
}

/// Groups get increasing ids; a group send is sequenced once and lands in every current
/// member's inbox, the sender first; outsiders and unknown groups are refused.
pub async fn groups_sequence_and_fan_out(s: Arc<dyn Store>) {
    let g = s
        .create_group("team".into(), 1, vec![1, 2, 3])
        .await
        .unwrap();
    assert_eq!((g.id, g.name.as_str(), g.admin), (1, "team", 1));
    assert_eq!(g.members, vec![1, 2, 3]);
    assert_eq!(s.group(1).await.unwrap(), Some(g.clone()));
    assert_eq!(s.group(99).await.unwrap(), None);
    let other = s.create_group("other".into(), 5, vec![5, 6]).await.unwrap();
    assert_eq!(other.id, 2);
    s.append(req(3, 1, "direct", "first")).await.unwrap();
    let a = s.append(group_req(2, 1, "g1")).await.unwrap();
    assert_eq!(a.conv, ConvId::Group(1));
    assert_eq!(a.seq, 1);
    assert_eq!(a.inboxes, vec![(2, 1), (1, 2), (3, 2)]);
    assert_eq!(a.useq, 1);
    let b = s.append(group_req(3, 1, "g2")).await.unwrap();
    assert_eq!((b.seq, b.inboxes.len()), (2, 3));
    assert!(matches!(
        s.append(group_req(4, 1, "outsider")).await,
        Err(StoreError::Refused(Refusal::NotMember { .. }))
    ));
    assert!(matches!(
        s.append(group_req(1, 77, "nowhere")).await,
        Err(StoreError::Refused(Refusal::NoGroup(77)))
    ));
    let list = s.conversations(2, 10).await.unwrap();
    assert_eq!(list[0].conv, ConvId::Group(1));
    assert_eq!((list[0].last_seq, list[0].unread), (2, 1));
    // A member who never wrote sees the group too, created or not.
    assert!(
        s.conversations(6, 10)
            .await
            .unwrap()
            .iter()
            .any(|c| c.conv == ConvId::Group(2))
    );
    let hist = s.history(ConvId::Group(1), None, 10).await.unwrap();
    assert_eq!(
        hist.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["g2", "g1"]
    );
}

/// Membership changes follow the admin rules, the member cap, and are ordered with sends:
/// a removed member gets nothing newer and loses the group from their list.
pub async fn group_membership_rules(s: Arc<dyn Store>) {
    let g = s.create_group("g".into(), 1, vec![2, 3]).await.unwrap().id;
    let add = |by, user, max_members| MemberChange::Add {
        by,
        user,
        max_members,
    };
    assert!(matches!(
        s.change_members(g, add(2, 4, 10)).await,
        Err(StoreError::Refused(Refusal::AdminAdds))
    ));
    let after = s.change_members(g, add(1, 4, 10)).await.unwrap();
    assert_eq!(after.members, vec![1, 2, 3, 4]);
    assert!(matches!(
        s.change_members(g, add(1, 4, 10)).await,
        Err(StoreError::Refused(Refusal::AlreadyMember(4)))
    ));
    assert!(matches!(
        s.change_members(g, add(1, 5, 4)).await,
        Err(StoreError::Refused(Refusal::GroupFull(4)))
    ));
    assert!(matches!(
        s.change_members(99, add(1, 5, 10)).await,
        Err(StoreError::Refused(Refusal::NoGroup(99)))
    ));
    s.append(group_req(1, g, "before")).await.unwrap();
    assert!(matches!(
        s.change_members(g, MemberChange::Remove { by: 3, user: 2 })
            .await,
        Err(StoreError::Refused(Refusal::AdminRemoves))
    ));
    let left = s
        .change_members(g, MemberChange::Remove { by: 2, user: 2 })
        .await
        .unwrap();
    assert_eq!(left.members, vec![1, 3, 4]);
    assert!(matches!(
        s.change_members(g, MemberChange::Remove { by: 1, user: 2 })
            .await,
        Err(StoreError::Refused(Refusal::NoSuchMember(2)))
    ));
    let a = s.append(group_req(3, g, "after")).await.unwrap();
    assert!(a.inboxes.iter().all(|&(u, _)| u != 2), "{:?}", a.inboxes);
    assert_eq!(
        s.inbox_head(2).await.unwrap(),
        1,
        "nothing newer for the removed member"
    );
    assert!(s.conversations(2, 10).await.unwrap().is_empty());
    assert!(matches!(
        s.append(group_req(2, g, "not any more")).await,
        Err(StoreError::Refused(Refusal::NotMember { .. }))
    ));
    // The admin leaving hands the group to the lowest remaining id.
    let handed = s
        .change_members(g, MemberChange::Remove { by: 1, user: 1 })
        .await
        .unwrap();
    assert_eq!((handed.admin, handed.members.clone()), (3, vec![3, 4]));
    assert_eq!(s.group(g).await.unwrap(), Some(handed));
}

/// Push registrations are kept per device (a new token replaces the old); dead letters get
/// increasing ids, list in order from a position, and can be removed.
pub async fn push_registrations_and_dead_letters(s: Arc<dyn Store>) {
    let reg = |user, device: &str, token: &str| PushRegistration {
        user,
        device: device.into(),
        platform: "fcm".into(),
        token: token.into(),
    };
    s.put_push(reg(1, "phone", "t1")).await.unwrap();
    s.put_push(reg(1, "tablet", "t2")).await.unwrap();
    s.put_push(reg(2, "phone", "t3")).await.unwrap();
    s.put_push(reg(1, "phone", "t1-new")).await.unwrap();
    let mine = s.pushes(1).await.unwrap();
    assert_eq!(
        mine,
        vec![reg(1, "phone", "t1-new"), reg(1, "tablet", "t2")]
    );
    assert_eq!(s.pushes(2).await.unwrap().len(), 1);
    assert!(s.pushes(3).await.unwrap().is_empty());
    let letter = |n: u64| DeadLetter {
        payload: format!("{{\"n\":{n}}}"),
        error: "gateway answered 500".into(),
        ts: n,
    };
    for n in 1..=3 {
        assert_eq!(s.put_dead_letter(letter(n)).await.unwrap(), n);
    }
    let all = s.dead_letters(0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all[1].1, letter(2));
    assert_eq!(s.dead_letters(1, 1).await.unwrap()[0].0, 2);
    s.remove_dead_letter(2).await.unwrap();
    let left = s.dead_letters(0, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(
        s.put_dead_letter(letter(4)).await.unwrap(),
        4,
        "ids are not reused"
    );
}

/// Idempotency records expire: on a store opened with an idempotency window of `window`,
/// an id repeated within the window is a duplicate; once the window has passed and the
/// store was settled (for backends that expire on compaction), the same id is a new send,
/// Takes about `window` plus the backend's expiry delay; the window must be long enough
/// for two sends.
pub async fn idempotency_expires_after_the_window(s: &dyn Store, window: std::time::Duration) {
    let first = s.append(req(1, 2, "again", "first")).await.expect("append");
    let within = s.append(req(1, 2, "again", "first")).await.expect("append");
    assert!(within.duplicate, "within the window an id is a duplicate");
    assert_eq!(within.seq, first.seq);
    for i in 0..200 {
        s.append(req(3, 4, &format!("burst-{i}"), "x"))
            .await
            .expect("append");
    }
    tokio::time::sleep(window + std::time::Duration::from_millis(300)).await;
    // A sweep or a TTL may need a moment past the window; settling forces what can be
    // forced.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match s.settle().await {
            Ok(()) | Err(StoreError::Unsupported(_)) => {}
            Err(e) => panic!("settle: {e}"),
        }
        let again = s.append(req(3, 4, "burst-0", "x")).await.expect("append");
        if !again.duplicate {
            assert_eq!(again.seq, 201, "a new send after the record expired");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idempotency record of burst-0 outlived its window by 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The first half of the reopen check of a durable backend: 50 acknowledged sends. The
/// caller then drops the store, opens it again on the same data and runs
/// [`check_after_reopen`].
pub async fn fill_before_reopen(s: &dyn Store) {
    for i in 0..50 {
        s.append(req(1, 2, &format!("r{i}"), &format!("body of r{i}")))
            .await
            .expect("append");
    }
}

/// The second half: everything acknowledged before the reopen is there, idempotency
/// records survived it, and the sequences continue where they were.
pub async fn check_after_reopen(s: &dyn Store) {
    let conv = ConvId::direct(1, 2).expect("distinct users");
    assert_eq!(s.history(conv, None, 100).await.unwrap().len(), 50);
    assert_eq!(s.inbox_head(2).await.unwrap(), 50);
    let again = s
        .append(req(1, 2, "r7", "body of r7"))
        .await
        .expect("append");
    assert!(again.duplicate, "idempotency survives the reopen");
    assert_eq!(again.seq, 8);
    let next = s
        .append(req(1, 2, "new", "body of new"))
        .await
        .expect("append");
    assert_eq!((next.seq, next.useq), (51, 51));
}

/// Instantiates every conformance check as a `#[tokio::test]` in the calling module. The
/// argument is an expression evaluating to a future of a fresh [`Subject`].
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            sequences_start_at_one_and_grow_by_one,
            repeated_ids_are_idempotent,
            append_all_answers_each_in_order,
            concurrent_appends_are_gap_free,
            history_pages_newest_first,
            inbox_reads_after_a_position,
            markers_are_cumulative,
            conversations_most_recent_first,
            contents_round_trip,
            disk_usage_grows,
            groups_sequence_and_fan_out,
            group_membership_rules,
            push_registrations_and_dead_letters,
        );
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let subject: $crate::store::conformance::Subject = $make.await;
                $crate::store::conformance::$check(subject.store.clone()).await;
                drop(subject);
            }
        )*
    };
}
