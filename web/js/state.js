// What the client knows, with no DOM and no network: conversations and their unread
// counts, each conversation's messages by seq, messages still pending, receipts, presence,
// typing and the inbox position. The rules of the protocol live here: messages are keyed
// by (conv, seq) so nothing shows twice however it arrived (live, sync, history, resend).

const TYPING_SHOWS_MS = 4000;

export class ChatState {
  constructor(me, device) {
    this.me = me;
    this.device = device;
    this.key = `chat:${me}:${device}`;
    /** conv → {conv, lastSeq, lastTs, unread, name} */
    this.convs = new Map();
    /** conv → Map(seq → {seq, from, id, body, ts}) */
    this.msgs = new Map();
    /** conv → seq to pass as `before` for the next older page; null at the start; absent before the first page. */
    this.older = new Map();
    /** conv → {delivered, read: Map(user → seq)}: receipts for my messages. */
    this.receipts = new Map();
    /** conv → {acked, read}: the markers this user has set. */
    this.markers = new Map();
    /** user → {status, last_seen} */
    this.presence = new Map();
    /** conv → Map(user → time the indicator ends) */
    this.typing = new Map();
    /** group → {group, name, members, admin} */
    this.groups = new Map();
    /** id → {id, to, conv, body, ts, failed}: sends not yet answered by `sent`, in order. */
    this.pending = new Map();
    /** The last inbox position seen, or null before any (then a reconnect reloads instead of syncing). */
    this.useq = null;
    this.load();
  }

  /** Pending sends and the inbox position survive a reload of the tab. */
  load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.key) || "null");
      if (!saved) return;
      this.useq = saved.useq ?? null;
      for (const p of saved.pending || []) this.pending.set(p.id, p);
    } catch {
      /* a damaged record is dropped */
    }
  }

  save() {
    const pending = [...this.pending.values()];
    sessionStorage.setItem(this.key, JSON.stringify({ useq: this.useq, pending }));
  }

  conv(conv) {
    let c = this.convs.get(conv);
    if (!c) {
      c = { conv, lastSeq: 0, lastTs: 0, unread: 0, name: null };
      this.convs.set(conv, c);
    }
    return c;
  }

  /** Conversations, most recent activity first. */
  sortedConvs() {
    return [...this.convs.values()].sort(
      (a, b) => b.lastTs - a.lastTs || b.lastSeq - a.lastSeq || (a.conv < b.conv ? -1 : 1),
    );
  }

  /** The conversation list from `GET /v1/conversations`. */
  setList(items) {
    for (const it of items) {
      const c = this.conv(it.conv);
      c.lastSeq = Math.max(c.lastSeq, it.last_seq);
      c.lastTs = Math.max(c.lastTs, it.last_ts);
      c.unread = it.unread;
    }
  }

  /**
   * Records an inbox position seen. `useq` stays the highest position below which every
   * entry was seen (live frames and `sent` answers may interleave), so a catch-up from it
   * misses nothing; positions seen beyond it wait in `ahead`.
   */
  seenUseq(useq, contiguous = false) {
    if (typeof useq !== "number") return;
    if (this.useq === null) this.useq = useq - 1;
    if (contiguous) {
      this.useq = Math.max(this.useq, useq);
    } else if (useq > this.useq) {
      this.ahead ??= new Set();
      this.ahead.add(useq);
    }
    if (this.ahead) {
      while (this.ahead.has(this.useq + 1)) this.ahead.delete(++this.useq);
      for (const u of this.ahead) if (u <= this.useq) this.ahead.delete(u);
    }
    this.save();
  }

  /**
   * Adds a message (from `msg`, a sync page or history). Returns true when it is new.
   * `counts` says whether a new message from someone else adds to the unread count.
   */
  addMessage(conv, m, counts) {
    let map = this.msgs.get(conv);
    if (!map) {
      map = new Map();
      this.msgs.set(conv, map);
    }
    if (map.has(m.seq)) return false;
    map.set(m.seq, { seq: m.seq, from: m.from, id: m.id, body: m.body, ts: m.ts });
    const c = this.conv(conv);
    const newer = m.seq > c.lastSeq;
    if (newer) {
      c.lastSeq = m.seq;
      c.lastTs = Math.max(c.lastTs, m.ts);
    }
    if (m.from === this.me) {
      if (this.pending.delete(m.id)) this.save();
    } else if (counts && newer && m.seq > this.mark(conv).read) {
      c.unread += 1;
    }
    const t = this.typing.get(conv);
    if (t) t.delete(m.from);
    return true;
  }

  /** A pending send got its `sent`: it becomes the message at `seq`. */
  confirm(f) {
    const p = this.pending.get(f.id);
    if (!p) return null;
    this.pending.delete(f.id);
    this.save();
    this.addMessage(f.conv, { seq: f.seq, from: this.me, id: f.id, body: p.body, ts: f.ts }, false);
    this.seenUseq(f.useq);
    return f.conv;
  }

  mark(conv) {
    let m = this.markers.get(conv);
    if (!m) {
      m = { acked: 0, read: 0 };
      this.markers.set(conv, m);
    }
    return m;
  }

  receipt(conv) {
    let r = this.receipts.get(conv);
    if (!r) {
      r = { delivered: 0, read: new Map() };
      this.receipts.set(conv, r);
    }
    return r;
  }

  /** `delivered` or `read` from the server. */
  applyReceipt(kind, f) {
    if (kind === "read" && f.user === this.me) {
      // Another device of mine read up to here.
      const m = this.mark(f.conv);
      m.read = Math.max(m.read, f.seq);
      m.acked = Math.max(m.acked, f.seq);
      const c = this.conv(f.conv);
      if (f.seq >= c.lastSeq) c.unread = 0;
      return;
    }
    const r = this.receipt(f.conv);
    if (kind === "delivered") r.delivered = Math.max(r.delivered, f.seq);
    else r.read.set(f.user, Math.max(r.read.get(f.user) || 0, f.seq));
  }

  /** The ticks of my message: "pending", "failed", "sent", "delivered" or "read". */
  stateOf(conv, m) {
    if (m.seq === undefined) return m.failed ? "failed" : "pending";
    const r = this.receipts.get(conv);
    if (!r) return "sent";
    for (const s of r.read.values()) if (s >= m.seq) return "read";
    return r.delivered >= m.seq ? "delivered" : "sent";
  }

  /** Messages of a conversation in seq order, then its pending sends in the order written. */
  timeline(conv) {
    const map = this.msgs.get(conv);
    const done = map ? [...map.values()].sort((a, b) => a.seq - b.seq) : [];
    const waiting = [...this.pending.values()].filter((p) => p.conv === conv);
    return done.concat(waiting.map((p) => ({ from: this.me, id: p.id, body: p.body, ts: p.ts, failed: p.failed })));
  }

  typingIn(conv, user) {
    let t = this.typing.get(conv);
    if (!t) {
      t = new Map();
      this.typing.set(conv, t);
    }
    t.set(user, Date.now() + TYPING_SHOWS_MS);
  }

  /** Who is typing in `conv` now. */
  typers(conv) {
    const t = this.typing.get(conv);
    if (!t) return [];
    const now = Date.now();
    return [...t.entries()].filter(([, until]) => until > now).map(([u]) => u);
  }

  /** The users whose presence is on screen: direct peers in the list and the open group's members. */
  watchedUsers(open) {
    const users = new Set();
    for (const c of this.convs.keys()) {
      const p = c.split(":");
      if (p[0] === "d") users.add(Number(p[1]) === this.me ? Number(p[2]) : Number(p[1]));
    }
    if (open && open.startsWith("g:")) {
      const g = this.groups.get(Number(open.slice(2)));
      if (g) for (const u of g.members) users.add(u);
    }
    users.delete(this.me);
    return [...users].sort((a, b) => a - b).slice(0, 1000);
  }
}
