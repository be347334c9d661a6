// The wslab browser chat: one WebSocket speaking the wslab chat protocol v1.
//
// Plain JavaScript on purpose: no build step, no framework, nothing to install, so
// every line the browser runs is a line you can read here. The page:
//   - joins under ?username=NAME, or asks for a name first;
//   - keeps its id and token in localStorage, so a reload is the same user;
//   - reconnects by itself (full-jitter exponential backoff) and recovers the
//     messages it missed (roomId + lastMessageId);
//   - queues messages typed while offline and resends them until acknowledged;
//   - renders user data only as text (textContent), never as HTML.
"use strict";

(() => {
  // ---------------------------------------------------------------------------
  // Policies: plain values, the same numbers as the Python client's backoff().
  // ---------------------------------------------------------------------------
  const BACKOFF_FIRST_S = 0.3;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_S = 10;
  // A server that accepts and then closes at once must not reset the backoff,
  // or we would hammer it every 0.3 s forever: only a connection that stayed
  // up this long after `connected` counts as a success.
  const STABLE_AFTER_MS = 2000;
  // Retrying these would only repeat them: 1008 (we broke a policy, e.g. our id
  // is taken) and 1009 (our message is too big).
  const NO_RETRY_CODES = new Set([1008, 1009]);

  const CLOSE_MEANINGS = {
    1000: "normal closure",
    1001: "going away",
    1006: "abnormal closure, no close frame",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
  };

  // ---------------------------------------------------------------------------
  // Small pure helpers.
  // ---------------------------------------------------------------------------

  // The socket lives next to the page: resolve "chat" against the page's own
  // URL, so the page also works behind a path prefix such as Binder's
  // /user/x/proxy/8765/. Never hard-code a host or a port.
  function socketUrlFor(pageHref) {
    const url = new URL("chat", pageHref);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  // Random ids from [A-Za-z0-9_-]: 64 symbols, so `byte & 63` is uniform.
  const ID_ALPHABET =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  function randomId(length = 22) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    return Array.from(bytes, (b) => ID_ALPHABET[b & 63]).join("");
  }

  function describeClose(close) {
    const meaning = CLOSE_MEANINGS[close.code] || "unknown code";
    const reason = close.reason ? ` "${close.reason}"` : "";
    return `${close.code} (${meaning})${reason}`;
  }

  // ---------------------------------------------------------------------------
  // Identity: one { id, token } per username, kept across reloads.
  // ---------------------------------------------------------------------------
  const identityKey = (username) => `wslab:identity:${username}`;

  function loadIdentity(username) {
    try {
      const saved = JSON.parse(localStorage.getItem(identityKey(username)));
      if (saved && typeof saved.id === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(saved.id)) {
        return { id: saved.id, token: typeof saved.token === "string" ? saved.token : null };
      }
    } catch (err) {
      // Storage disabled or corrupt: fall through to a fresh identity.
    }
    return { id: randomId(), token: null };
  }

  function saveIdentity(username, identity) {
    try {
      localStorage.setItem(identityKey(username), JSON.stringify(identity));
    } catch (err) {
      // Private mode or a full quota: this tab still works, a reload is a new user.
    }
  }

  // ---------------------------------------------------------------------------
  // State. Everything the page shows is rendered from this object.
  // ---------------------------------------------------------------------------
  const chat = {
    state: "idle", // idle | connecting | online | reconnecting | offline
    requestedName: null, // the name we asked for (the localStorage key)
    username: null, // the name the server bound to our id
    id: null,
    token: null,
    socket: null,
    socketUrl: null,
    attempt: 0, // backoff exponent
    retryAt: 0, // performance.now() of the next attempt
    lastClose: null, // { code, reason, wasClean } of the last connection that opened
    failedAttempts: 0, // attempts that never opened since lastClose
    error: null, // the last `error` event from the server
    users: new Map(), // id -> username
    messages: [], // entries of the current history, sorted by messageId
    byMessageId: new Map(), // messageId -> entry, for the dedupe
    pastHistories: [], // lists of entries from rooms that are gone (server restarts)
    roomId: null, // names the server's history: its messageIds mean nothing elsewhere
    lastMessageId: null,
    outbox: [], // { clientMessageId, message }: sent or not, not yet acknowledged
    events: [], // the raw socket log, for learners and tests
  };

  const timers = { retry: null, countdown: null, stable: null };

  // ---------------------------------------------------------------------------
  // Elements.
  // ---------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    badge: $("status-badge"),
    detail: $("status-detail"),
    error: $("error"),
    nameForm: $("name-form"),
    nameInput: $("name-input"),
    chat: $("chat"),
    me: $("me"),
    users: $("users"),
    messages: $("messages"),
    messageForm: $("message-form"),
    messageInput: $("message-input"),
  };

  // ---------------------------------------------------------------------------
  // Rendering: createElement + textContent only. A username or a message such as
  // <img src=x onerror=alert(1)> must show as those characters, never run.
  // ---------------------------------------------------------------------------
  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderStatus() {
    el.status.dataset.state = chat.state;
    let badge = chat.state;
    if (chat.state === "idle") badge = "not connected";
    if (chat.state === "reconnecting") {
      const seconds = Math.max(0, (chat.retryAt - performance.now()) / 1000);
      badge = `reconnecting in ${seconds.toFixed(1)} s`;
    }
    el.badge.textContent = badge;

    // Say why we are not online: the close code is the lesson.
    let detail = "";
    if (chat.lastClose && chat.state !== "online") {
      detail = `last close ${describeClose(chat.lastClose)}`;
      if (chat.failedAttempts > 0) {
        const s = chat.failedAttempts === 1 ? "" : "s";
        detail += `, ${chat.failedAttempts} failed attempt${s} since`;
      }
    }
    el.detail.textContent = detail ? `— ${detail}` : "";
    if (chat.lastClose) el.status.dataset.closeCode = String(chat.lastClose.code);

    el.error.hidden = !chat.error;
    el.error.textContent = chat.error ? `error ${chat.error.code}: ${chat.error.detail}` : "";
  }

  function renderUsers() {
    const items = [];
    for (const [id, username] of chat.users) {
      const li = make("li", id === chat.id ? "me" : "", username);
      li.dataset.id = id;
      if (id === chat.id) li.append(make("span", "you", " (you)"));
      items.push(li);
    }
    el.users.replaceChildren(...items);
    el.me.textContent = chat.username || chat.requestedName || "";
  }

  function messageItem(entry) {
    const li = make("li", entry.id === chat.id ? "message mine" : "message");
    li.dataset.messageId = String(entry.messageId);
    li.dataset.authorId = entry.id;
    const time = make("time", "ts", formatTime(entry.ts));
    time.dateTime = entry.ts;
    li.append(time, make("span", "author", entry.username), make("span", "text", entry.message));
    return li;
  }

  function pendingItem(item) {
    const li = make("li", "message mine pending");
    li.dataset.clientMessageId = item.clientMessageId;
    li.append(
      make("span", "ts", "--:--"),
      make("span", "author", chat.username || chat.requestedName),
      make("span", "text", item.message),
      make("span", "note", " (pending)"),
    );
    return li;
  }

  function renderMessages() {
    // Stay at the bottom if the reader was there; leave them alone if they scrolled up.
    const list = el.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const items = [];
    for (const past of chat.pastHistories) {
      items.push(...past.map(messageItem));
      items.push(make("li", "divider", "the server restarted: its history starts again here"));
    }
    items.push(...chat.messages.map(messageItem), ...chat.outbox.map(pendingItem));
    list.replaceChildren(...items);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function formatTime(ts) {
    const date = new Date(ts);
    if (Number.isNaN(date.getTime())) return ts;
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---------------------------------------------------------------------------
  // Messages: keyed by messageId, so nothing ever shows twice.
  // ---------------------------------------------------------------------------
  function addMessage(entry) {
    // New or a repeat (the answer to a resend, or recovery overlapping what we
    // had), it acknowledges our own message with that clientMessageId.
    if (entry.clientMessageId && entry.id === chat.id) {
      chat.outbox = chat.outbox.filter((item) => item.clientMessageId !== entry.clientMessageId);
    }
    if (chat.byMessageId.has(entry.messageId)) return;
    chat.byMessageId.set(entry.messageId, entry);
    chat.messages.push(entry);
    chat.messages.sort((a, b) => a.messageId - b.messageId);
    chat.lastMessageId = Math.max(chat.lastMessageId ?? entry.messageId, entry.messageId);
  }

  function enterRoom(roomId) {
    if (chat.roomId !== null && roomId !== chat.roomId) {
      // Another room: a restarted server without a durable store, numbering its
      // messages from 1 again. Its ids cannot be merged with ours, so keep what we
      // saw above a divider and start a new list.
      chat.pastHistories.push(chat.messages);
      chat.messages = [];
      chat.byMessageId.clear();
      chat.lastMessageId = null;
    }
    chat.roomId = roomId;
  }

  // ---------------------------------------------------------------------------
  // The socket.
  // ---------------------------------------------------------------------------
  function log(type, fields) {
    chat.events.push({ type, t: Date.now(), ...fields });
  }

  function send(payload) {
    const text = JSON.stringify(payload);
    log("send", { data: text });
    chat.socket.send(text);
  }

  function setState(state) {
    chat.state = state;
    document.body.dataset.state = state; // lets the CSS grey out a stale user list
    clearInterval(timers.countdown);
    if (state === "reconnecting") timers.countdown = setInterval(renderStatus, 100);
    renderStatus();
  }

  function connect() {
    clearTimeout(timers.retry);
    const socket = new WebSocket(chat.socketUrl);
    chat.socket = socket;
    let opened = false;
    setState("connecting");

    // Each handler first checks that its socket is still the current one: a late
    // event from an old socket must not touch the new connection's state.
    socket.addEventListener("open", () => {
      if (socket !== chat.socket) return;
      opened = true;
      log("open", {});
      const hello = { event: "connecting", id: chat.id, username: chat.requestedName };
      hello.features = ["presence"]; // presence changes batched per server tick
      if (chat.token) hello.token = chat.token;
      // Only a reconnect knows what it already has; a fresh page wants the history.
      // The roomId tells the server which history our lastMessageId counts in: a
      // restarted server has another one, and then sends us all of its own.
      if (chat.lastMessageId !== null) {
        hello.lastMessageId = chat.lastMessageId;
        if (chat.roomId) hello.roomId = chat.roomId;
      }
      send(hello);
    });

    socket.addEventListener("message", (message) => {
      if (socket !== chat.socket) return;
      log("message", { data: message.data });
      let event;
      try {
        event = JSON.parse(message.data); // a binary frame (a Blob) fails here too
      } catch (err) {
        return; // Not ours to understand (e.g. a lesson's echo); the log keeps it.
      }
      handleEvent(event);
    });

    // The browser tells nothing more about an error, on purpose: a close event follows.
    socket.addEventListener("error", () => {
      if (socket !== chat.socket) return;
      log("error", {});
    });

    socket.addEventListener("close", (close) => {
      if (socket !== chat.socket) return;
      const { code, reason, wasClean } = close;
      log("close", { code, reason, wasClean });
      chat.socket = null;
      clearTimeout(timers.stable);
      // Keep the close of the connection that was up: "refused again" would
      // hide why we went offline in the first place.
      if (opened || chat.lastClose === null) {
        chat.lastClose = { code, reason, wasClean };
      } else {
        chat.failedAttempts += 1;
      }
      if (NO_RETRY_CODES.has(code)) {
        setState("offline");
      } else {
        scheduleReconnect();
      }
    });
  }

  function scheduleReconnect() {
    // Full jitter: a random delay up to the exponential bound, so a hundred pages
    // dropped by one server restart do not all come back in the same instant.
    const bound = Math.min(BACKOFF_CAP_S, BACKOFF_FIRST_S * BACKOFF_FACTOR ** chat.attempt);
    const delayMs = Math.random() * bound * 1000;
    chat.attempt += 1;
    chat.retryAt = performance.now() + delayMs;
    timers.retry = setTimeout(connect, delayMs);
    setState("reconnecting");
  }

  function handleEvent(event) {
    switch (event.event) {
      case "connected": {
        chat.id = event.id;
        chat.username = event.username;
        // The server may issue a new token (e.g. it restarted and forgot us): keep the latest.
        chat.token = event.token;
        saveIdentity(chat.requestedName, { id: chat.id, token: chat.token });
        chat.users = new Map(event.connectedUserList.map((u) => [u.id, u.username]));
        enterRoom(event.roomId ?? null);
        for (const entry of event.messagesList) addMessage(entry);
        chat.error = null;
        chat.failedAttempts = 0;
        timers.stable = setTimeout(() => {
          chat.attempt = 0;
        }, STABLE_AFTER_MS);
        setState("online");
        // Resend everything not yet acknowledged, in order. A message the server
        // already stored comes back as its original entry, so it is never doubled.
        for (const item of chat.outbox) {
          send({ event: "writeMessage", message: item.message, clientMessageId: item.clientMessageId });
        }
        break;
      }
      case "joined":
        chat.users.set(event.id, event.username);
        break;
      case "disconnected":
        chat.users.delete(event.id);
        break;
      case "presence":
        // Left first, then joined: an id in both was taken by a new user in the tick.
        for (const u of event.left) chat.users.delete(u.id);
        for (const u of event.joined) chat.users.set(u.id, u.username);
        break;
      case "messageWritten":
        // Only `message` matters; a seed-compatible `messagesList` would repeat history.
        addMessage(event.message);
        break;
      case "error":
        chat.error = { code: event.code, detail: event.detail };
        renderStatus();
        break;
      default:
        return; // An event this page does not know: ignore it, the log keeps it.
    }
    renderUsers();
    renderMessages();
  }

  // ---------------------------------------------------------------------------
  // User actions.
  // ---------------------------------------------------------------------------
  function join(name) {
    chat.requestedName = name;
    const identity = loadIdentity(name);
    chat.id = identity.id;
    chat.token = identity.token;
    chat.socketUrl = socketUrlFor(location.href);
    el.nameForm.hidden = true;
    el.chat.hidden = false;
    renderUsers();
    connect();
    el.messageInput.focus();
  }

  function sendMessage(text) {
    // Every message is queued first and leaves the queue only when the server
    // acknowledges it: online or offline, the same path.
    const item = { clientMessageId: randomId(), message: text };
    chat.outbox.push(item);
    if (chat.state === "online") {
      send({ event: "writeMessage", message: item.message, clientMessageId: item.clientMessageId });
    }
    renderMessages();
  }

  el.messageForm.addEventListener("submit", (event) => {
    event.preventDefault(); // Enter in the box submits the form; stay on the page.
    const text = el.messageInput.value;
    if (text.trim() === "") return;
    sendMessage(text);
    el.messageInput.value = "";
  });

  el.nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = el.nameInput.value.trim();
    if (name === "") return;
    // Put the name in the URL, so that a reload rejoins as the same user.
    const url = new URL(location.href);
    url.searchParams.set("username", name);
    history.replaceState(null, "", url);
    join(name);
  });

  // ---------------------------------------------------------------------------
  // A read-only window onto the state, for the console and for tests.
  // ---------------------------------------------------------------------------
  const copy = (value) => JSON.parse(JSON.stringify(value));
  window.wslabChat = Object.freeze({
    get state() { return chat.state; },
    get id() { return chat.id; },
    get username() { return chat.username; },
    get users() { return Array.from(chat.users, ([id, username]) => ({ id, username })); },
    get messages() { return copy([...chat.pastHistories.flat(), ...chat.messages]); },
    get pending() { return copy(chat.outbox); },
    get roomId() { return chat.roomId; },
    get lastMessageId() { return chat.lastMessageId; },
    get attempt() { return chat.attempt; }, // the backoff exponent: 0 after a stable connection
    get lastClose() { return chat.lastClose && { ...chat.lastClose }; },
    get socketUrl() { return chat.socketUrl; },
    get events() { return chat.events; }, // the live log: open/message/error/close/send
    socketUrlFor,
  });

  // ---------------------------------------------------------------------------
  // Start: join at once with ?username=NAME, else ask for a name.
  // ---------------------------------------------------------------------------
  const nameFromUrl = (new URLSearchParams(location.search).get("username") || "").trim();
  renderStatus();
  if (nameFromUrl) {
    join(nameFromUrl);
  } else {
    el.nameForm.hidden = false;
    el.nameInput.focus();
  }
})();
