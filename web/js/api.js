// The HTTP half of the protocol the client uses: sign-in, the conversation list, history,
// groups. Errors come back as ApiError with the server's code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, token, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: String(res.status), message: text || res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

/** `POST /v1/dev/token`: a token for any user, on servers started with --dev-login. */
export async function devToken(user, device) {
  try {
    return (await call("POST", "/v1/dev/token", null, { user, device })).token;
  } catch (e) {
    if (e.status === 404) throw new ApiError(404, "not_found", "this server does not offer sign-in by user id (start it with --dev-login), paste a token instead");
    throw e;
  }
}

/** The claims of a token (`sub`, `dev`, `exp`), read without checking: the server checks. */
export function claims(token) {
  const part = token.split(".")[1];
  if (!part) throw new Error("not a token");
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  const c = JSON.parse(json);
  const user = Number(c.sub);
  if (!(user > 0) || typeof c.dev !== "string") throw new Error("the token names no user or device");
  return { user, device: c.dev, exp: c.exp };
}

/** The signed-in user's HTTP calls. */
export class Api {
  constructor(token) {
    this.token = token;
  }
  conversations(limit = 200) {
    return call("GET", `/v1/conversations?limit=${limit}`, this.token);
  }
  history(conv, before, limit) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before != null) q.set("before", String(before));
    return call("GET", `/v1/conversations/${encodeURIComponent(conv)}/messages?${q}`, this.token);
  }
  presence(users) {
    return call("GET", `/v1/presence?users=${users.join(",")}`, this.token);
  }
  group(id) {
    return call("GET", `/v1/groups/${id}`, this.token);
  }
  createGroup(name, members) {
    return call("POST", "/v1/groups", this.token, { name, members });
  }
  addMember(group, user) {
    return call("POST", `/v1/groups/${group}/members`, this.token, { user });
  }
  removeMember(group, user) {
    return call("DELETE", `/v1/groups/${group}/members/${user}`, this.token);
  }
}
