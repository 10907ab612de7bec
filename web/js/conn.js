// The WebSocket and its life: connect with `?token=` (browsers cannot set headers),
// reconnect with exponential backoff and jitter after any loss, notice a dead network by
// pings that get no pong, and report each state to the page.

const PING_EVERY_MS = 20000;
const PONG_WITHIN_MS = 8000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;

export class Connection {
  /**
   * @param {string} token
   * @param {{onOpen: Function, onFrame: Function, onState: Function, onAuthFailed: Function}} handlers
   */
  constructor(token, handlers) {
    this.token = token;
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = false;
    this.onOnline = () => this.retryNow();
    window.addEventListener("online", this.onOnline);
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.timer);
    this.clearPing();
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  /** Sends a frame if the socket is open; false if it is not (the caller keeps what matters). */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Reconnects at once instead of waiting out the backoff (the browser came back online). */
  retryNow() {
    if (this.stopped || this.open) return;
    clearTimeout(this.timer);
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(this.token)}`;
    this.h.onState({ state: "connecting" });
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.h.onState({ state: "up" });
      this.startPing();
      this.h.onOpen();
    };
    ws.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame.type === "pong") {
        clearTimeout(this.pongTimer);
        return;
      }
      this.h.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearPing();
      if (this.stopped) return;
      // The upgrade answers 401 for a bad token; a browser only sees a close without open.
      // Check over HTTP before retrying forever.
      if (!opened) this.h.onAuthFailed?.();
      this.scheduleRetry(ev.code);
    };
  }

  scheduleRetry(code) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    this.h.onState({ state: "down", retryIn: delay, code });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  startPing() {
    this.clearPing();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        // No pong: the network is gone without a close. Drop the socket and reconnect.
        const ws = this.ws;
        this.ws = null;
        this.clearPing();
        if (ws) ws.close();
        if (!this.stopped) this.scheduleRetry();
      }, PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  clearPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }
}
