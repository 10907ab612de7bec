// The client's behaviour: frames in, state updated, frames out. On every (re)connect it
// catches up with `sync` from the last inbox position it saw, then resends what is still
// pending with the same ids (the server answers a repeat with the original `sent`), then
// sets its markers and presence subscription again. The page draws through `ui`.

import { ChatState } from "./state.js";
import { convOf, newId, targetOf } from "./util.js";
import { Connection } from "./conn.js";

const SYNC_PAGE = 500;
const TYPING_EVERY_MS = 2000;
const RETRY_SEND_MS = 2000;

export class Chat {
  constructor(api, me, device, ui, pageSize) {
    this.api = api;
    this.me = me;
    this.ui = ui;
    this.pageSize = pageSize;
    this.state = new ChatState(me, device);
    this.open = null;
    this.caughtUp = false;
    this.loadingOlder = new Set();
    this.lastTyping = 0;
    this.subscribed = "";
    this.firstOpen = true;
    this.conn = new Connection(api.token, {
      onOpen: () => this.onOpen(),
      onFrame: (f) => this.onFrame(f),
      onState: (s) => this.ui.status(s),
      onAuthFailed: () => this.checkAuth(),
    });
    this.onVisible = () => this.markRead();
    document.addEventListener("visibilitychange", this.onVisible);
    this.typingTimer = setInterval(() => this.ui.typing(), 1000);
  }

  start() {
    this.ui.list();
    this.conn.start();
  }

  stop() {
    this.conn.stop();
    document.removeEventListener("visibilitychange", this.onVisible);
    clearInterval(this.typingTimer);
  }

  /** A closed upgrade before any open may be a refused token: ask over HTTP. */
  async checkAuth() {
    try {
      await this.api.conversations(1);
    } catch (e) {
      if (e.status === 401) {
        this.conn.stop();
        this.ui.signedOut(`Signed out: ${e.message}`);
      }
    }
  }

  // ---- connecting and catching up ----

  async onOpen() {
    this.caughtUp = false;
    this.subscribed = "";
    if (this.state.useq === null || this.firstOpen) {
      // Nothing seen yet: the list and the open conversation are read afresh. Live frames
      // start at the inbox head of this connection, so nothing falls between.
      this.firstOpen = false;
      await this.reloadList();
      if (this.open) await this.loadPage(this.open, null, false);
      if (this.state.useq !== null) {
        this.conn.send({ type: "sync", after: this.state.useq, limit: SYNC_PAGE });
        return;
      }
      this.afterCatchUp();
    } else {
      this.conn.send({ type: "sync", after: this.state.useq, limit: SYNC_PAGE });
    }
  }

  afterCatchUp() {
    this.caughtUp = true;
    for (const p of this.state.pending.values()) {
      if (!p.failed) this.conn.send({ type: "send", id: p.id, to: p.to, body: p.body });
    }
    for (const [conv, m] of this.state.markers) {
      if (m.acked > 0) this.conn.send({ type: "ack", conv, seq: m.acked });
    }
    this.ackAll();
    this.markRead();
    this.subscribe();
    this.ui.status({ state: "up", caughtUp: true });
    this.ui.list();
    this.ui.messages({});
  }

  async reloadList() {
    try {
      this.state.setList(await this.api.conversations());
    } catch (e) {
      this.ui.error(`Conversations: ${e.message}`);
    }
    for (const c of this.state.convs.keys()) this.groupInfo(c);
    this.ui.list();
    this.subscribe();
  }

  // ---- frames from the server ----

  onFrame(f) {
    switch (f.type) {
      case "msg":
        this.state.seenUseq(f.useq);
        this.incoming([f]);
        break;
      case "sync":
        for (const m of f.items) this.state.seenUseq(m.useq);
        this.incoming(f.items);
        // `next` is the last position of the page: everything up to it was seen.
        this.state.seenUseq(f.next, true);
        if (f.more) this.conn.send({ type: "sync", after: f.next, limit: SYNC_PAGE });
        else this.afterCatchUp();
        break;
      case "sent": {
        const conv = this.state.confirm(f);
        if (conv) this.changed(conv);
        break;
      }
      case "delivered":
      case "read":
        this.state.applyReceipt(f.type, f);
        this.changed(f.conv);
        break;
      case "typing":
        this.state.typingIn(f.conv, f.user);
        this.ui.typing();
        break;
      case "presence":
        this.state.presence.set(f.user, { status: f.status, last_seen: f.last_seen });
        this.ui.presence();
        break;
      case "error":
        this.onError(f);
        break;
      default:
        break;
    }
  }

  incoming(items) {
    const touched = new Set();
    for (const m of items) {
      const known = this.state.convs.has(m.conv);
      if (this.state.addMessage(m.conv, m, true)) touched.add(m.conv);
      if (!known) this.groupInfo(m.conv);
    }
    if (touched.size === 0) return;
    this.ackAll();
    this.markRead();
    this.ui.list();
    if (this.open && touched.has(this.open)) this.ui.messages({});
    this.subscribe();
  }

  onError(f) {
    const p = f.ref ? this.state.pending.get(f.ref) : null;
    if (!p) {
      this.ui.error(`${f.code}: ${f.message}`);
      // A catch-up the server could not answer (its store busy or down) is tried again.
      if (!this.caughtUp && this.state.useq !== null) {
        setTimeout(() => {
          if (!this.caughtUp) this.conn.send({ type: "sync", after: this.state.useq, limit: SYNC_PAGE });
        }, RETRY_SEND_MS);
      }
      return;
    }
    if (f.code === "unavailable" || f.code === "rate_limited" || f.code === "internal") {
      // Nothing was stored: the same id goes again shortly.
      setTimeout(() => {
        if (this.state.pending.has(p.id) && this.caughtUp) {
          this.conn.send({ type: "send", id: p.id, to: p.to, body: p.body });
        }
      }, RETRY_SEND_MS);
      return;
    }
    p.failed = `${f.code}: ${f.message}`;
    this.state.save();
    this.ui.error(`Not sent: ${f.message}`);
    this.changed(p.conv);
  }

  changed(conv) {
    this.ui.list();
    if (conv === this.open) this.ui.messages({});
  }

  // ---- what the user does ----

  send(body) {
    if (!this.open || body.trim() === "") return;
    const to = targetOf(this.open, this.me);
    const p = { id: newId(), to, conv: convOf(to, this.me), body, ts: Date.now() };
    this.state.pending.set(p.id, p);
    this.state.save();
    if (this.caughtUp) this.conn.send({ type: "send", id: p.id, to, body });
    this.ui.messages({ toBottom: true });
  }

  typed() {
    const now = Date.now();
    if (!this.open || now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.conn.send({ type: "typing", conv: this.open });
  }

  async openConv(conv) {
    this.open = conv;
    this.state.conv(conv);
    this.ui.list();
    this.ui.messages({ toBottom: true, opened: true });
    this.groupInfo(conv);
    if (!this.state.older.has(conv)) await this.loadPage(conv, null, false);
    this.markRead();
    this.subscribe();
  }

  /** Loads a page of history: the newest (`before` null) or the one before `before`. */
  async loadPage(conv, before, older) {
    if (this.loadingOlder.has(conv)) return;
    this.loadingOlder.add(conv);
    try {
      const page = await this.api.history(conv, before, this.pageSize);
      for (const m of page.messages) this.state.addMessage(conv, { ...m, conv }, false);
      if (older || !this.state.older.has(conv)) this.state.older.set(conv, page.next_before);
      this.ui.error("");
    } catch (e) {
      if (e.status === 403 || e.status === 404) {
        this.state.older.set(conv, null);
        this.ui.error(e.status === 403 ? "You are not a member of this conversation any more." : e.message);
      } else {
        this.ui.error(`History: ${e.message}`);
      }
    } finally {
      this.loadingOlder.delete(conv);
    }
    if (conv === this.open) this.ui.messages({ older, toBottom: !older });
    this.ui.list();
  }

  /** The user scrolled to the top: the next older page, if there is one. */
  loadOlder() {
    const conv = this.open;
    if (!conv) return;
    const before = this.state.older.get(conv);
    if (before == null) return;
    this.loadPage(conv, before, true);
  }

  ackAll() {
    if (!this.caughtUp) return;
    for (const [conv, c] of this.state.convs) {
      const m = this.state.mark(conv);
      if (c.lastSeq > m.acked) {
        m.acked = c.lastSeq;
        this.conn.send({ type: "ack", conv, seq: c.lastSeq });
      }
    }
  }

  /** The open conversation, shown in a visible tab, is read up to its newest message. */
  markRead() {
    const conv = this.open;
    if (!conv || !this.caughtUp || document.visibilityState !== "visible") return;
    const c = this.state.conv(conv);
    const m = this.state.mark(conv);
    if (c.lastSeq > m.read && this.conn.send({ type: "read", conv, seq: c.lastSeq })) {
      m.read = c.lastSeq;
      m.acked = Math.max(m.acked, c.lastSeq);
    }
    if (c.unread !== 0) {
      c.unread = 0;
      this.ui.list();
    }
  }

  /**
   * Presence of the users on screen: pulled over HTTP when that set changes (so it shows
   * even while the socket reconnects), and subscribed on the socket for what changes next.
   */
  subscribe() {
    const users = this.state.watchedUsers(this.open);
    const key = users.join(",");
    if (key !== this.pulled && users.length > 0) {
      this.pulled = key;
      this.api
        .presence(users)
        .then((list) => {
          // A frame that came meanwhile is newer than this answer: only fill gaps.
          for (const p of list) if (!this.state.presence.has(p.user)) this.state.presence.set(p.user, p);
          this.ui.presence();
        })
        .catch(() => {
          this.pulled = null;
        });
    }
    if (key === this.subscribed || !this.conn.open) return;
    if (this.conn.send({ type: "presence_sub", users })) this.subscribed = key;
  }

  // ---- groups ----

  async groupInfo(conv, fresh = false) {
    if (!conv.startsWith("g:")) return;
    const id = Number(conv.slice(2));
    if (!fresh && this.state.groups.has(id)) return;
    try {
      const g = await this.api.group(id);
      this.state.groups.set(id, g);
      this.state.conv(conv).name = g.name;
    } catch (e) {
      if (e.status === 403) this.state.conv(conv).name = `Group ${id} (left)`;
    }
    this.ui.list();
    if (conv === this.open) this.ui.members();
    this.subscribe();
  }

  async createGroup(name, members) {
    const g = await this.api.createGroup(name, members);
    const c = this.state.conv(g.conv);
    c.lastTs = Date.now();
    await this.groupInfo(g.conv, true);
    await this.openConv(g.conv);
  }

  async addMember(user) {
    const id = Number(this.open.slice(2));
    await this.api.addMember(id, user);
    await this.groupInfo(this.open, true);
  }

  async removeMember(user) {
    const conv = this.open;
    const id = Number(conv.slice(2));
    await this.api.removeMember(id, user);
    if (user === this.me) {
      this.state.convs.delete(conv);
      this.state.groups.delete(id);
      this.open = null;
      this.ui.list();
      this.ui.messages({});
      return;
    }
    await this.groupInfo(conv, true);
  }
}
