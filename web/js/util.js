// Small helpers the other modules share: element lookup and creation, time formats,
// message ids and conversation ids. Text always goes in as textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

/** Creates an element; `props` sets properties (`text` sets textContent, `attrs` attributes). */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v;
    else if (k === "attrs") for (const [a, x] of Object.entries(v)) e.setAttribute(a, x);
    else e[k] = v;
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

const pad = (n) => String(n).padStart(2, "0");

/** `HH:MM`, or `D Mon HH:MM` for another day. */
export function fmtTime(ms) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (new Date().toDateString() === d.toDateString()) return hm;
  return `${d.getDate()} ${d.toLocaleString("en", { month: "short" })} ${hm}`;
}

/** A presence as words: "online", "last seen 14:02", "offline". */
export function presenceText(p) {
  if (!p) return "";
  if (p.status === "online") return "online";
  return p.last_seen ? `last seen ${fmtTime(p.last_seen)}` : "offline";
}

/** A fresh client message id: time and 64 random bits, unique per sending user. */
export function newId() {
  const r = new Uint32Array(2);
  crypto.getRandomValues(r);
  return `w${Date.now().toString(36)}-${r[0].toString(36)}${r[1].toString(36)}`;
}

/** The conversation a send target writes to. */
export function convOf(to, me) {
  const [kind, id] = to.split(":");
  if (kind === "g") return `g:${id}`;
  const a = Number(id);
  return a < me ? `d:${a}:${me}` : `d:${me}:${a}`;
}

/** The send target of a conversation. */
export function targetOf(conv, me) {
  const p = conv.split(":");
  if (p[0] === "g") return `g:${p[1]}`;
  return `u:${Number(p[1]) === me ? p[2] : p[1]}`;
}

/** The other user of a direct conversation, or null for a group. */
export function peerOf(conv, me) {
  const p = conv.split(":");
  if (p[0] !== "d") return null;
  return Number(p[1]) === me ? Number(p[2]) : Number(p[1]);
}

/** A user id from a form field: an integer above 0, or null. */
export function parseUser(text) {
  const t = String(text).trim();
  if (!/^[0-9]{1,20}$/.test(t)) return null;
  const n = Number(t);
  return n > 0 && Number.isSafeInteger(n) ? n : null;
}
