// The wslab browser chat: one WebSocket speaking the wslab chat protocol v1.
//
// Plain JavaScript on purpose: no build step, no framework, nothing to install, so
// every line the browser runs is a line you can read here. The page:
//   - joins under ?username=NAME, or asks for a name first;
//   - keeps its id and token in localStorage, so a reload is the same user;
//   - reconnects by itself with the same rules as the Python client (the
//     Reconnector below mirrors wslab/retry.py), and recovers the messages it
//     missed (roomId + lastMessageId);
//   - keeps messages typed while offline in a localStorage outbox and resends
//     them until acknowledged, also after a reload, and after `rate_limited`;
//   - renders incrementally, at most MAX_SHOWN messages, so a flood of messages
//     does not freeze the page;
//   - renders user data only as text (textContent), never as HTML, with
//     bidirectional controls neutralized and shared names told apart.
"use strict";

(() => {
  // ---------------------------------------------------------------------------
  // Policies: plain values. DEFAULT_POLICY is wslab.retry.page_policy() of the
  // Python package, word for word: tests/e2e/browser checks that they are equal.
  // A lesson may override numbers by setting window.wslabPolicy before this
  // script runs (e.g. a longer minUptimeS on a slow machine).
  // ---------------------------------------------------------------------------
  const DEFAULT_POLICY = Object.freeze({
    initialS: 0.3,
    factor: 2,
    capS: 10,
    minUptimeS: 2,
    finalCodes: [1008, 1009],
    rateLimitPauseS: 1,
    closeMeanings: {
      1000: "normal closure: one side called close() and the other agreed",
      1001: "going away: the server is stopping or the page was left",
      1005: "no status received: the close frame carried no code, as after ws.close() (never sent on the wire)",
      1006: "abnormal closure: the connection died without a close frame (never sent on the wire)",
      1007: "invalid payload data: a text frame that was not UTF-8",
      1008: "policy violation: the server refused this client (id spoofing, repeated errors)",
      1009: "message too big: a frame was over the server's max_size",
      1011: "internal error: the server's handler failed",
      1012: "service restart: the server is restarting, reconnect soon",
      1013: "try again later: the server is full",
    },
  });
  const POLICY = Object.freeze({ ...DEFAULT_POLICY, ...(window.wslabPolicy || {}) });

  const MAX_SHOWN = 200; // message items in the list, as the notebook widget shows
  const MAX_KEPT = 2000; // messages kept in memory (recovery needs only the newest id)
  const MAX_LOG = 5000; // raw socket events kept for learners and tests
  const TRUNCATED_NOTICE = "some earlier messages are no longer available";

  // ---------------------------------------------------------------------------
  // The reconnect decisions: the same state machine as wslab.retry.Reconnector.
  // Times are in seconds. afterClose returns the delay before the next attempt,
  // or null to stop for good.
  // ---------------------------------------------------------------------------
  class Reconnector {
    constructor(policy = POLICY, random = Math.random) {
      this.policy = policy;
      this.random = random;
      this.attempts = 0; // connection attempts started
      this.failures = 0; // consecutive connections that ended without being stable
      this.opened = false;
      this.connectedAt = null;
      this.ceiling = policy.initialS;
    }
    beginAttempt() {
      this.attempts += 1;
      this.opened = false;
      this.connectedAt = null;
    }
    afterOpen() {
      this.opened = true;
    }
    afterConnected(now) {
      this.connectedAt = now;
    }
    uptime(now) {
      return this.connectedAt === null ? null : now - this.connectedAt;
    }
    failuresAt(now) {
      const up = this.uptime(now);
      return up !== null && up >= this.policy.minUptimeS ? 0 : this.failures;
    }
    shouldRetry(code, closedByUs) {
      if (closedByUs) return false;
      const effective = code === null || code === undefined ? 1006 : code;
      return !this.policy.finalCodes.includes(effective);
    }
    afterClose(code, closedByUs, now, refused = false) {
      const up = this.uptime(now);
      this.connectedAt = null;
      if (up !== null && up >= this.policy.minUptimeS) this.reset(); // it held
      this.failures += 1;
      if (refused || !this.shouldRetry(code, closedByUs)) return null;
      // Full jitter: a random delay up to the exponential ceiling, so a hundred
      // pages dropped by one server restart do not all come back in one instant.
      const delay = this.random() * this.ceiling;
      this.ceiling = Math.min(this.policy.capS, this.ceiling * this.policy.factor);
      return delay;
    }
    reset() {
      this.failures = 0;
      this.ceiling = this.policy.initialS;
    }
  }

  // ---------------------------------------------------------------------------
  // Display rules: the same as wslab/display.py (tests check both on one table).
  // ---------------------------------------------------------------------------
  const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  const neutralize = (text) => String(text).replace(BIDI_CONTROLS, "\ufffd");
  const shortSuffix = (id) => `#${id.slice(-4)}`;
  const nameKey = (name) => String(name).normalize("NFC").replace(BIDI_CONTROLS, "").toLowerCase();

  // pairs: [[id, username], ...] of the present users -> Map id -> name as shown.
  function displayNames(pairs) {
    const counts = new Map();
    for (const [, name] of pairs) counts.set(nameKey(name), (counts.get(nameKey(name)) || 0) + 1);
    const shown = new Map();
    for (const [id, name] of pairs) {
      let label = neutralize(name);
      if (counts.get(nameKey(name)) > 1) label += ` ${shortSuffix(id)}`;
      shown.set(id, label);
    }
    return shown;
  }

  const presenceLine = (kind, name) => (kind === "joined" ? `${name} joined` : `${name} left`);

  function describeClose(close) {
    const meaning = POLICY.closeMeanings[close.code] || "not a code this kit uses";
    const reason = close.reason ? ` "${neutralize(close.reason)}"` : "";
    return `${close.code} (${meaning})${reason}`;
  }

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
  const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  function randomId(length = 22) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    return Array.from(bytes, (b) => ID_ALPHABET[b & 63]).join("");
  }

  const nowS = () => performance.now() / 1000;

  // ---------------------------------------------------------------------------
  // Storage: one { id, token } and one outbox per username, kept across reloads.
  // ---------------------------------------------------------------------------
  const identityKey = (username) => `wslab:identity:${username}`;
  const outboxKey = (username) => `wslab:outbox:${username}`;

  function loadJson(key) {
    try {
      return JSON.parse(localStorage.getItem(key));
    } catch (err) {
      return null; // Storage disabled or corrupt: start afresh.
    }
  }

  function saveJson(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      // Private mode or a full quota: this tab still works, a reload forgets.
    }
  }

  function loadIdentity(username) {
    const saved = loadJson(identityKey(username));
    if (saved && typeof saved.id === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(saved.id)) {
      return { id: saved.id, token: typeof saved.token === "string" ? saved.token : null };
    }
    return { id: randomId(), token: null };
  }

  function loadOutbox(username) {
    const saved = loadJson(outboxKey(username));
    if (!Array.isArray(saved)) return [];
    return saved.filter(
      (item) => item && typeof item.clientMessageId === "string" && typeof item.message === "string",
    );
  }

  // ---------------------------------------------------------------------------
  // State.
  // ---------------------------------------------------------------------------
  const chat = {
    state: "idle", // idle | connecting | online | reconnecting | offline
    requestedName: null, // the name we asked for (the localStorage key)
    username: null, // the name the server bound to our id
    id: null,
    token: null,
    socket: null,
    socketUrl: null,
    reconnector: new Reconnector(),
    retryAt: 0, // performance.now() of the next attempt
    lastClose: null, // { code, reason, wasClean } of the last connection that opened
    failedAttempts: 0, // attempts that never opened since lastClose
    error: null, // the last `error` event from the server
    truncated: false, // the last `connected` said that missed messages are gone
    wasPageReload: false,
    users: new Map(), // id -> username
    names: new Map(), // id -> name as shown (with a suffix where names clash)
    messages: [], // entries of the current history, sorted by messageId (bounded)
    byMessageId: new Set(), // messageIds in `messages`, for the dedupe
    pastHistories: [], // [{ count, last }] of rooms that are gone (server restarts)
    roomId: null, // names the server's history: its messageIds mean nothing elsewhere
    lastMessageId: null,
    outbox: [], // { clientMessageId, message }: sent or not, not yet acknowledged
    events: [], // the raw socket log, for learners and tests (bounded)
  };

  const timers = { retry: null, countdown: null, resend: null };
  let resendAgain = false;

  // ---------------------------------------------------------------------------
  // Elements.
  // ---------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    badge: $("status-badge"),
    detail: $("status-detail"),
    notice: $("notice"),
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
    } else if (chat.state === "online" && chat.wasPageReload) {
      detail = "back within the reload grace: the others saw no leave and no join";
    }
    el.detail.textContent = detail ? `— ${detail}` : "";
    if (chat.lastClose) el.status.dataset.closeCode = String(chat.lastClose.code);

    el.notice.hidden = !chat.truncated;
    el.notice.textContent = chat.truncated ? TRUNCATED_NOTICE : "";

    el.error.hidden = !chat.error;
    el.error.textContent = chat.error
      ? `error ${neutralize(chat.error.code)}: ${neutralize(chat.error.detail)}`
      : "";
  }

  const shownName = (id, username) => chat.names.get(id) ?? neutralize(username);

  function renderUsers() {
    chat.names = displayNames(Array.from(chat.users));
    const items = [];
    for (const [id, name] of chat.names) {
      const li = make("li", id === chat.id ? "me" : "", name);
      li.dataset.id = id;
      if (id === chat.id) li.append(make("span", "you", " (you)"));
      items.push(li);
    }
    el.users.replaceChildren(...items);
    el.me.textContent = neutralize(chat.username || chat.requestedName || "");
    // A name that now clashes (or no longer does) changes on the shown messages too.
    for (const author of el.messages.querySelectorAll("li[data-message-id] .author")) {
      const li = author.parentElement;
      author.textContent = shownName(li.dataset.authorId, li.dataset.username);
    }
  }

  function messageItem(entry) {
    const li = make("li", entry.id === chat.id ? "message mine" : "message");
    li.dataset.messageId = String(entry.messageId);
    li.dataset.authorId = entry.id;
    li.dataset.username = entry.username;
    const time = make("time", "ts", formatTime(entry.ts));
    time.dateTime = entry.ts;
    li.append(
      time,
      make("span", "author", shownName(entry.id, entry.username)),
      make("span", "text", neutralize(entry.message)),
    );
    return li;
  }

  function pendingItem(item) {
    const li = make("li", "message mine pending");
    li.dataset.clientMessageId = item.clientMessageId;
    li.append(
      make("span", "ts", "--:--"),
      make("span", "author", neutralize(chat.username || chat.requestedName)),
      make("span", "text", neutralize(item.message)),
      make("span", "note", " (pending)"),
    );
    return li;
  }

  // One formatter for every message: toLocaleTimeString would build one per call,
  // which costs more than the rest of a message's rendering.
  const TIME_FORMAT = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
  function formatTime(ts) {
    const date = new Date(ts);
    if (Number.isNaN(date.getTime())) return ts;
    return TIME_FORMAT.format(date);
  }

  // The list: [history and system lines...][pending...]. New items go before the
  // first pending one. Rendering is batched: events queue work (in arrival order),
  // and one flush per turn of the event loop touches the DOM; of a flood it builds
  // only the newest MAX_SHOWN messages, the most the list keeps.
  const CURRENT = "li[data-message-id]:not(.past)"; // messages of the current room
  const render = { queue: [], pending: false, scheduled: false };

  function scheduleRender() {
    if (render.scheduled) return;
    render.scheduled = true;
    setTimeout(flushRender, 0);
  }

  function firstPendingNode() {
    return el.messages.querySelector("li.pending");
  }

  function newestShownId() {
    const shown = el.messages.querySelectorAll(CURRENT);
    return shown.length ? Number(shown[shown.length - 1].dataset.messageId) : -Infinity;
  }

  function insertByMessageId(node, messageId) {
    // Recovered out of order: before the first newer message of this room.
    for (const other of el.messages.querySelectorAll(CURRENT)) {
      if (Number(other.dataset.messageId) > messageId) {
        el.messages.insertBefore(node, other);
        return;
      }
    }
    el.messages.insertBefore(node, firstPendingNode());
  }

  function flushRender() {
    render.scheduled = false;
    const list = el.messages;
    // Stay at the bottom if the reader was there; leave them alone if they scrolled up.
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const queue = render.queue.splice(0);
    let skip = queue.filter((op) => op.entry).length - MAX_SHOWN; // would be trimmed at once
    let fragment = document.createDocumentFragment();
    let newest = newestShownId();
    for (const op of queue) {
      if (op.line) {
        fragment.append(op.line);
        continue;
      }
      if ((skip -= 1) >= 0 || !chat.byMessageId.has(op.entry.messageId)) continue;
      if (op.entry.messageId > newest) {
        fragment.append(messageItem(op.entry));
        newest = op.entry.messageId;
      } else {
        list.insertBefore(fragment, firstPendingNode());
        fragment = document.createDocumentFragment();
        insertByMessageId(messageItem(op.entry), op.entry.messageId);
      }
    }
    list.insertBefore(fragment, firstPendingNode());
    if (render.pending) {
      render.pending = false;
      for (const node of list.querySelectorAll("li.pending")) node.remove();
      list.append(...chat.outbox.map(pendingItem));
    }
    trimList();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function trimList() {
    // Keep at most MAX_SHOWN messages; drop the oldest items (and the lines before them).
    let extra = el.messages.querySelectorAll("li[data-message-id]").length - MAX_SHOWN;
    while (extra > 0 && el.messages.firstChild) {
      const first = el.messages.firstChild;
      if (first.dataset && first.dataset.messageId) extra -= 1;
      first.remove();
    }
  }

  function systemLine(text, className = "system") {
    render.queue.push({ line: make("li", className, text) });
    scheduleRender();
  }

  // ---------------------------------------------------------------------------
  // Messages: keyed by messageId, so nothing ever shows twice.
  // ---------------------------------------------------------------------------
  function saveOutbox() {
    if (chat.requestedName !== null) saveJson(outboxKey(chat.requestedName), chat.outbox);
    render.pending = true;
    scheduleRender();
  }

  function addMessage(entry) {
    // New or a repeat (the answer to a resend, or recovery overlapping what we
    // had), it acknowledges our own message with that clientMessageId.
    if (entry.clientMessageId && entry.id === chat.id) {
      const before = chat.outbox.length;
      chat.outbox = chat.outbox.filter((item) => item.clientMessageId !== entry.clientMessageId);
      if (chat.outbox.length !== before) saveOutbox();
    }
    if (chat.byMessageId.has(entry.messageId)) return;
    chat.byMessageId.add(entry.messageId);
    const list = chat.messages;
    if (!list.length || list[list.length - 1].messageId < entry.messageId) {
      list.push(entry);
    } else {
      let i = list.length - 1;
      while (i > 0 && list[i - 1].messageId > entry.messageId) i -= 1;
      list.splice(i, 0, entry);
    }
    while (list.length > MAX_KEPT) chat.byMessageId.delete(list.shift().messageId);
    chat.lastMessageId = Math.max(chat.lastMessageId ?? entry.messageId, entry.messageId);
    render.queue.push({ entry });
    scheduleRender();
  }

  function enterRoom(roomId) {
    if (chat.roomId !== null && roomId !== chat.roomId) {
      // Another room: a restarted server without a durable store, numbering its
      // messages from 1 again. Its ids cannot be merged with ours, so keep what we
      // saw above a divider and start a new list.
      flushRender(); // show what the old room sent, then mark it as past
      for (const node of el.messages.querySelectorAll(CURRENT)) node.classList.add("past");
      chat.pastHistories.push(chat.messages);
      chat.messages = [];
      chat.byMessageId.clear();
      chat.lastMessageId = null;
      systemLine("the server restarted: its history starts again here", "divider");
    }
    chat.roomId = roomId;
  }

  // ---------------------------------------------------------------------------
  // The socket.
  // ---------------------------------------------------------------------------
  function log(type, fields) {
    chat.events.push({ type, t: Date.now(), ...fields });
    if (chat.events.length > MAX_LOG) chat.events.splice(0, chat.events.length - MAX_LOG);
  }

  function send(payload) {
    const text = JSON.stringify(payload);
    log("send", { data: text });
    chat.socket.send(text);
  }

  function sendOutbox() {
    // Resend everything not yet acknowledged, in order. A message the server
    // already stored comes back as its original entry, so it is never doubled.
    if (chat.state !== "online") return;
    for (const item of chat.outbox) {
      send({ event: "writeMessage", message: item.message, clientMessageId: item.clientMessageId });
    }
  }

  function resendLater() {
    // The server dropped some of our messages (rate_limited): they are still in
    // the outbox. Resend once its bucket had time to refill; more drops meanwhile
    // make the running resend go round once more.
    resendAgain = true;
    if (timers.resend !== null) return;
    const tick = () => {
      if (!resendAgain) {
        timers.resend = null;
        return;
      }
      resendAgain = false;
      timers.resend = setTimeout(() => {
        sendOutbox();
        tick();
      }, POLICY.rateLimitPauseS * 1000);
    };
    tick();
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
    chat.reconnector.beginAttempt();
    setState("connecting");

    // Each handler first checks that its socket is still the current one: a late
    // event from an old socket must not touch the new connection's state.
    socket.addEventListener("open", () => {
      if (socket !== chat.socket) return;
      chat.reconnector.afterOpen();
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
      if (event && typeof event === "object") handleEvent(event);
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
      // Keep the close of the connection that was up: "refused again" would
      // hide why we went offline in the first place.
      if (chat.reconnector.opened || chat.lastClose === null) {
        chat.lastClose = { code, reason, wasClean };
      } else {
        chat.failedAttempts += 1;
      }
      const delay = chat.reconnector.afterClose(code, false, nowS());
      if (delay === null) {
        setState("offline");
      } else {
        chat.retryAt = performance.now() + delay * 1000;
        timers.retry = setTimeout(connect, delay * 1000);
        setState("reconnecting");
      }
    });
  }

  function handleEvent(event) {
    switch (event.event) {
      case "connected": {
        chat.id = event.id;
        chat.username = event.username;
        // The server may issue a new token (e.g. it restarted and forgot us): keep the latest.
        chat.token = event.token;
        saveJson(identityKey(chat.requestedName), { id: chat.id, token: chat.token });
        chat.users = new Map(event.connectedUserList.map((u) => [u.id, u.username]));
        chat.truncated = event.truncated === true;
        chat.wasPageReload = event.wasPageReload === true;
        enterRoom(event.roomId ?? null);
        renderUsers();
        for (const entry of event.messagesList) addMessage(entry);
        chat.error = null;
        chat.failedAttempts = 0;
        chat.reconnector.afterConnected(nowS());
        setState("online");
        sendOutbox();
        return;
      }
      case "joined":
        chat.users.set(event.id, event.username);
        renderUsers();
        systemLine(presenceLine("joined", shownName(event.id, event.username)));
        return;
      case "disconnected": {
        const name = shownName(event.id, event.username);
        chat.users.delete(event.id);
        renderUsers();
        systemLine(presenceLine("disconnected", name));
        return;
      }
      case "presence": {
        // Left first, then joined: an id in both was taken by a new user in the tick.
        const left = event.left.map((u) => shownName(u.id, u.username));
        for (const u of event.left) chat.users.delete(u.id);
        for (const u of event.joined) chat.users.set(u.id, u.username);
        renderUsers();
        for (const name of left) systemLine(presenceLine("disconnected", name));
        for (const u of event.joined) systemLine(presenceLine("joined", shownName(u.id, u.username)));
        return;
      }
      case "messageWritten":
        // Only `message` matters; a seed-compatible `messagesList` would repeat history.
        if (event.message) addMessage(event.message);
        return;
      case "error":
        chat.error = { code: event.code, detail: event.detail };
        if (event.code === "rate_limited") resendLater();
        renderStatus();
        return;
      default:
        // An event this page does not know: ignore it, the log keeps it.
    }
  }

  // ---------------------------------------------------------------------------
  // User actions.
  // ---------------------------------------------------------------------------
  function join(name) {
    chat.requestedName = name;
    const identity = loadIdentity(name);
    chat.id = identity.id;
    chat.token = identity.token;
    // What was typed before a reload and never acknowledged: sent again once online.
    chat.outbox = loadOutbox(name);
    chat.socketUrl = socketUrlFor(location.href);
    el.nameForm.hidden = true;
    el.chat.hidden = false;
    renderUsers();
    render.pending = true;
    scheduleRender();
    connect();
    el.messageInput.focus();
  }

  function sendMessage(text) {
    // Every message is queued first (and stored) and leaves the queue only when
    // the server acknowledges it: online or offline, the same path.
    const item = { clientMessageId: randomId(), message: text };
    chat.outbox.push(item);
    saveOutbox();
    if (chat.state === "online") {
      send({ event: "writeMessage", message: item.message, clientMessageId: item.clientMessageId });
    }
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
    // Consecutive failed connections the backoff counts from: 0 once a connection held.
    get attempt() { return chat.reconnector.failuresAt(nowS()); },
    get attempts() { return chat.reconnector.attempts; },
    get truncated() { return chat.truncated; },
    get lastClose() { return chat.lastClose && { ...chat.lastClose }; },
    get socketUrl() { return chat.socketUrl; },
    get events() { return chat.events; }, // the live log: open/message/error/close/send
    policy: POLICY,
    defaultPolicy: DEFAULT_POLICY,
    limits: Object.freeze({ MAX_SHOWN, MAX_KEPT, MAX_LOG }),
    display: Object.freeze({ neutralize, displayNames, presenceLine, TRUNCATED_NOTICE }),
    Reconnector,
    describeClose,
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
