// Drawing the state into the page. Lists are reconciled by key, so an element keeps its
// identity (and the reader's place) while ticks and counts change. Every text from the
// network goes in through textContent.

import { $, el, fmtTime, peerOf, presenceText } from "./util.js";

const TICKS = { pending: "🕓", failed: "⚠", sent: "✓", delivered: "✓✓", read: "✓✓" };
const TICK_WORDS = { pending: "pending", failed: "not sent", sent: "sent", delivered: "delivered", read: "read" };

/** Puts `items` (each with a `key`) into `parent` in order, reusing elements by key. */
function reconcile(parent, items, make, update) {
  const old = new Map();
  for (const c of parent.children) old.set(c.dataset.key, c);
  let at = parent.firstElementChild;
  for (const item of items) {
    let e = old.get(item.key);
    if (e) old.delete(item.key);
    else {
      e = make(item);
      e.dataset.key = item.key;
    }
    update(e, item);
    if (e !== at) parent.insertBefore(e, at);
    else at = at.nextElementSibling;
  }
  for (const e of old.values()) e.remove();
}

export class View {
  constructor(getChat) {
    this.chat = getChat;
    this.messagesEl = $("messages");
  }

  get c() {
    return this.chat();
  }

  title(conv) {
    const s = this.c.state;
    const peer = peerOf(conv, s.me);
    if (peer !== null) return `User ${peer}`;
    return s.convs.get(conv)?.name || `Group ${conv.slice(2)}`;
  }

  status(s) {
    const e = $("conn-status");
    e.classList.toggle("up", s.state === "up");
    if (s.state === "up") e.textContent = s.caughtUp ? "connected" : "catching up…";
    else if (s.state === "connecting") e.textContent = "connecting…";
    else e.textContent = `offline, retrying in ${Math.ceil(s.retryIn / 1000)} s`;
    $("app").dataset.conn = s.state === "up" && s.caughtUp ? "ready" : s.state;
  }

  error(text) {
    $("chat-error").textContent = text;
  }

  signedOut(text) {
    window.dispatchEvent(new CustomEvent("chat-signed-out", { detail: text }));
  }

  list() {
    const s = this.c.state;
    const items = s.sortedConvs().map((c) => ({ key: c.conv, c }));
    reconcile(
      $("conv-list"),
      items,
      () => {
        const b = el("button", { type: "button" }, el("span", { className: "dot" }), el("span", { className: "title" }), el("span", { className: "unread" }), el("time", { className: "when" }));
        b.addEventListener("click", () => this.c.openConv(b.parentElement.dataset.key));
        return el("li", {}, b);
      },
      (li, { c }) => {
        const b = li.firstElementChild;
        const peer = peerOf(c.conv, s.me);
        const p = peer !== null ? s.presence.get(peer) : null;
        const dot = b.children[0];
        dot.className = `dot${peer === null ? " group" : ""}${p?.status === "online" ? " online" : ""}`;
        dot.title = peer === null ? "group" : presenceText(p) || "offline";
        b.children[1].textContent = this.title(c.conv);
        const unread = b.children[2];
        unread.textContent = c.unread > 0 ? String(c.unread) : "";
        unread.setAttribute("aria-label", `${c.unread} unread`);
        b.children[3].textContent = c.lastTs ? fmtTime(c.lastTs) : "";
        b.setAttribute("aria-current", String(c.conv === this.c.open));
        li.dataset.unread = String(c.unread);
      },
    );
    this.header();
  }

  header() {
    const conv = this.c.open;
    $("chat-title").textContent = conv ? this.title(conv) : "No conversation open";
    $("composer").hidden = !conv;
    this.presence(false);
  }

  presence(withList = true) {
    const s = this.c.state;
    const conv = this.c.open;
    const peer = conv ? peerOf(conv, s.me) : null;
    const p = peer !== null ? s.presence.get(peer) : null;
    $("chat-presence").textContent = presenceText(p);
    $("chat-presence").dataset.status = p ? p.status : "";
    if (withList) {
      this.list();
      this.members();
    }
  }

  typing() {
    const conv = this.c.open;
    const who = conv ? this.c.state.typers(conv) : [];
    const text = who.length === 0 ? "" : `${who.map((u) => `User ${u}`).join(", ")} ${who.length === 1 ? "is" : "are"} typing…`;
    if ($("typing").textContent !== text) $("typing").textContent = text;
  }

  /** The open conversation's messages; keeps the reader's place when older ones arrive above. */
  messages({ older = false, toBottom = false, opened = false }) {
    const box = this.messagesEl;
    const conv = this.c.open;
    const s = this.c.state;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const items = [];
    if (conv) {
      const next = s.older.get(conv);
      if (next === null) items.push({ key: "start", start: true });
      else if (next !== undefined) items.push({ key: "more", more: true });
      for (const m of s.timeline(conv)) items.push({ key: `${m.from}/${m.id}`, m });
    }
    const group = conv?.startsWith("g:");
    reconcile(
      box,
      items,
      (it) => {
        if (!it.m) return el("li", { className: "older" });
        const mine = it.m.from === s.me;
        return el(
          "li",
          { className: `msg${mine ? " mine" : ""}` },
          !mine && group ? el("span", { className: "from", text: `User ${it.m.from}` }) : null,
          el("p", { className: "body", text: it.m.body }),
          el("span", { className: "meta" }, el("time"), mine ? el("span", { className: "tick" }) : null),
        );
      },
      (e, it) => {
        if (!it.m) {
          e.textContent = it.start ? "Start of the conversation" : "Scroll up for older messages";
          return;
        }
        const m = it.m;
        e.dataset.seq = m.seq === undefined ? "" : String(m.seq);
        const time = e.querySelector("time");
        time.textContent = fmtTime(m.ts);
        time.dateTime = new Date(m.ts).toISOString();
        if (m.from === s.me) {
          const st = s.stateOf(conv, m);
          e.dataset.state = st;
          const tick = e.querySelector(".tick");
          tick.textContent = TICKS[st];
          tick.setAttribute("aria-label", TICK_WORDS[st]);
          tick.title = m.failed ? `not sent: ${m.failed}` : TICK_WORDS[st];
        }
      },
    );
    if (opened || toBottom || (atBottom && !older)) box.scrollTop = box.scrollHeight;
    else if (older) box.scrollTop = box.scrollHeight - fromBottom;
    // A first page shorter than the box cannot be scrolled: fetch the next one at once.
    if (conv && box.scrollHeight <= box.clientHeight && s.older.get(conv) != null) this.c.loadOlder();
    this.typing();
  }

  members() {
    const conv = this.c.open;
    const box = $("members");
    const s = this.c.state;
    const g = conv?.startsWith("g:") ? s.groups.get(Number(conv.slice(2))) : null;
    box.hidden = !g;
    if (!g) return;
    const admin = g.admin === s.me;
    $("add-member").hidden = !admin;
    const items = g.members.map((u) => ({ key: String(u), u }));
    reconcile(
      $("member-list"),
      items,
      (it) => {
        const li = el("li", {}, el("span", { className: "dot" }), el("span", { className: "name" }));
        if (admin && it.u !== s.me) {
          const b = el("button", { type: "button", className: "plain", text: "remove" });
          b.setAttribute("aria-label", `remove user ${it.u}`);
          b.addEventListener("click", () => this.c.removeMember(it.u).catch((e) => this.error(e.message)));
          li.append(b);
        }
        return li;
      },
      (li, it) => {
        const p = s.presence.get(it.u);
        li.children[0].className = `dot${p?.status === "online" || it.u === s.me ? " online" : ""}`;
        li.children[0].title = it.u === s.me ? "you" : presenceText(p) || "offline";
        li.children[1].textContent = `User ${it.u}${it.u === g.admin ? " (admin)" : ""}${it.u === s.me ? " (you)" : ""}`;
      },
    );
  }
}
