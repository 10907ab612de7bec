// The page's entry point: sign-in (by user id with --dev-login, or a pasted token), then
// the chat wired to the forms, the composer and the message list's scrolling. The token
// lives in sessionStorage, so each tab or window may be a different user or device.

import { Api, claims, devToken } from "./api.js";
import { Chat } from "./chat.js";
import { View } from "./view.js";
import { $, parseUser } from "./util.js";

const TOKEN_KEY = "chat:token";
/** History page size: `?page=N` in the address (1..=200), 30 otherwise. */
const PAGE = (() => {
  const n = Number(new URLSearchParams(location.search).get("page"));
  return Number.isInteger(n) && n >= 1 && n <= 200 ? n : 30;
})();

let chat = null;
const view = new View(() => chat);

function showLogin(message = "") {
  if (chat) chat.stop();
  chat = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

function signIn(token) {
  let who;
  try {
    who = claims(token);
  } catch (e) {
    showLogin(`That is not a usable token: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = `User ${who.user} · ${who.device}`;
  document.title = `Chat · User ${who.user}`;
  chat = new Chat(new Api(token), who.user, who.device, view, PAGE);
  chat.start();
}

$("dev-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = parseUser($("login-user").value);
  if (user === null) {
    $("login-error").textContent = "A user id is a whole number above 0.";
    return;
  }
  try {
    signIn(await devToken(user, $("login-device").value.trim()));
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("login-token").value.trim());
});

$("sign-out").addEventListener("click", () => showLogin());
window.addEventListener("chat-signed-out", (ev) => showLogin(ev.detail));

$("new-direct").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = parseUser($("new-direct-user").value);
  if (user === null || user === chat.me) {
    view.error(user === chat.me ? "You cannot message yourself." : "A user id is a whole number above 0.");
    return;
  }
  $("new-direct-user").value = "";
  const conv = user < chat.me ? `d:${user}:${chat.me}` : `d:${chat.me}:${user}`;
  chat.openConv(conv);
});

$("new-group").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const raw = $("new-group-members").value.split(/[\s,]+/).filter(Boolean);
  const members = raw.map(parseUser);
  if (members.includes(null)) {
    view.error("Members are user ids separated by commas.");
    return;
  }
  try {
    await chat.createGroup($("new-group-name").value.trim(), members);
    $("new-group-name").value = "";
    $("new-group-members").value = "";
  } catch (e) {
    view.error(`Group: ${e.message}`);
  }
});

$("add-member").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = parseUser($("add-member-user").value);
  if (user === null) {
    view.error("A user id is a whole number above 0.");
    return;
  }
  try {
    await chat.addMember(user);
    $("add-member-user").value = "";
  } catch (e) {
    view.error(`Add member: ${e.message}`);
  }
});

$("leave-group").addEventListener("click", () => chat.removeMember(chat.me).catch((e) => view.error(e.message)));

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("composer-input");
  chat.send(input.value);
  input.value = "";
  input.focus();
});

$("composer-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});
$("composer-input").addEventListener("input", () => chat.typed());

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 60) chat.loadOlder();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
