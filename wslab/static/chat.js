// The wslab browser chat: one WebSocket speaking the wslab chat protocol v1.
//
// Plain JavaScript on purpose: no build step, no framework, nothing to install, so
// every line the browser runs is a line you can read here. The page:
//   - joins under ?username=NAME, or asks for a name first;
//   - keeps its id and token in localStorage, so a reload is the same user;
//   - reconnects by itself with the same rules as the Python client (the
//     Reconnector below is wslab/retry.py's state machine, run on the policy the
//     server serves with the page), and recovers the messages it missed
//     (roomId + lastMessageId);
//   - keeps messages typed while offline in a localStorage outbox and resends
//     them until acknowledged, also after a reload, and after `rate_limited`,
//     always oldest first and one at a time, so that the room gets them in the
//     order they were typed (the client promise of the protocol);
//   - lists its own user while it is connected, whatever presence events say;
//   - renders incrementally, at most MAX_SHOWN messages, so a flood of messages
//     does not freeze the page;
//   - shows everything through the display rules it shares with the notebook
//     widget (chatview.js): user data only as text (textContent), never as
//     HTML, with bidirectional controls (and, in names, invisible characters)
//     shown visibly and shared names told apart.
"use strict";

(() => {
  // ---------------------------------------------------------------------------
  // Policies and words: from Python. The server fills the JSON in index.html's
  // #wslab-config when it serves the page (wslab.frontend.page_config): the
  // reconnect policy and every close code's meaning (wslab.retry.page_policy),
  // and the display constants (wslab.display). This file holds no copy of them.
  // A lesson may override numbers by setting window.wslabPolicy before this
  // script runs (e.g. a longer minUptimeS on a slow machine).
  // ---------------------------------------------------------------------------
  const CONFIG = readConfig();
  function readConfig() {
    try {
      return JSON.parse(document.getElementById("wslab-config").textContent);
    } catch (err) {
      // Opened as a file, or from another web server: nothing filled the config in.
      const error = document.getElementById("error");
      error.textContent = "This page must be served by the wslab chat server (python -m wslab serve).";
      error.hidden = false;
      throw err;
    }
  }
  const DEFAULT_POLICY = Object.freeze(CONFIG.policy);
  const POLICY = Object.freeze({ ...DEFAULT_POLICY, ...(window.wslabPolicy || {}) });
  // The display rules, shared with the notebook widget (chatview.js).
  const view = wslabView.rules(CONFIG.display, POLICY.closeMeanings);
  const { neutralize, neutralizeName, displayNames, describeClose } = view;

  const MAX_SHOWN = CONFIG.display.maxShown; // message items in the list, as the notebook widget shows
  const MAX_KEPT = 2000; // messages kept in memory (recovery needs only the newest id)
  const MAX_LOG = 5000; // raw socket events kept for learners and tests

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
  // Small pure helpers.
  // ---------------------------------------------------------------------------

  // The socket lives next to the page: resolve "chat" against the page's own
  // URL, so the page also works behind a path prefix such as Binder's
  // /user/x/proxy/8765/. Never hard-code a host or a port. A classroom's server
  // gives the socket's path below the hub's service prefix (config.socketPath).
  function socketUrlFor(pageHref, path = CONFIG.socketPath || "chat") {
    const url = new URL(path, pageHref);
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
    users: new Map(), // id -> { id, username, tag } (tag: if the server sent one)
    names: new Map(), // id -> name as shown (with the tag where names clash)
    messages: [], // entries of the current history, sorted by messageId (bounded)
    byMessageId: new Set(), // messageIds in `messages`, for the dedupe
    pastHistories: [], // [{ count, last }] of rooms that are gone (server restarts)
    roomId: null, // names the server's history: its messageIds mean nothing elsewhere
    lastMessageId: null,
    outbox: [], // { clientMessageId, message }: sent or not, not yet acknowledged
    events: [], // the raw socket log, for learners and tests (bounded)
  };

  const timers = { retry: null, countdown: null, resend: null };

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
  // Rendering: through the shared display rules (chatview.js), which build every
  // item with createElement + textContent only.
  // ---------------------------------------------------------------------------
  const make = wslabView.make;

  function renderStatus() {
    el.status.dataset.state = chat.state;
    const text = view.statusText({
      state: chat.state,
      retryIn: (chat.retryAt - performance.now()) / 1000,
      lastClose: chat.lastClose,
      failedAttempts: chat.failedAttempts,
      wasPageReload: chat.wasPageReload,
      truncated: chat.truncated,
      error: chat.error,
    });
    el.badge.textContent = text.badge;
    el.detail.textContent = text.detail ? `— ${text.detail}` : "";
    if (chat.lastClose) el.status.dataset.closeCode = String(chat.lastClose.code);
    el.notice.hidden = !text.notice;
    el.notice.textContent = text.notice;
    el.error.hidden = !text.error;
    el.error.textContent = text.error;
  }

  const shownName = (id, username) => chat.names.get(id) ?? neutralizeName(username);
  const userOf = (u) => ({ id: u.id, username: u.username, tag: u.tag });

  function renderUsers() {
    chat.names = displayNames(Array.from(chat.users.values(), (u) => [u.id, u.username, u.tag]));
    el.users.replaceChildren(...view.userItems(chat.names, chat.id));
    el.me.textContent = neutralizeName(chat.username || chat.requestedName || "");
    view.renameAuthors(el.messages, shownName);
  }

  function messageItem(entry) {
    const li = view.messageItem(entry, shownName(entry.id, entry.username), entry.id === chat.id);
    if (entry.announcement === true) li.classList.add("announcement"); // a classroom teacher's
    return li;
  }

  function pendingItem(item) {
    return view.pendingItem(item, neutralizeName(chat.username || chat.requestedName));
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

  function systemLine(line) {
    render.queue.push({ line });
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
      if (entry.clientMessageId === sending.inFlight) {
        sending.inFlight = null;
        sendDue(); // the acknowledgement lets the next one go
      }
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
      systemLine(make("li", "divider", "the server restarted: its history starts again here"));
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

  // The outbox's sending rule, as wslab.outbox.Outbox with its default window of 1:
  // only the oldest unacknowledged message is on the wire, and the next one goes
  // only once the server acknowledged it. A message the server dropped
  // (rate_limited), or that a lost connection took with it, is therefore sent again
  // before any newer one: the room gets one author's messages in typing order. The
  // server's de-duplication by clientMessageId makes sending one twice harmless.
  const sending = {
    inFlight: null, // the clientMessageId on the wire on this connection, or null
    pausedUntil: 0, // performance.now() before which nothing goes out (rate_limited)
  };

  function sendDue() {
    if (chat.state !== "online" || chat.socket === null || sending.inFlight !== null) return;
    if (performance.now() < sending.pausedUntil) return; // the pause's timer calls again
    const oldest = chat.outbox[0];
    if (oldest === undefined) return;
    sending.inFlight = oldest.clientMessageId;
    send({ event: "writeMessage", message: oldest.message, clientMessageId: oldest.clientMessageId });
  }

  function pauseSending() {
    // The server dropped the message on the wire (still the oldest in the outbox):
    // send nothing until its bucket had time to refill, then resend from the oldest.
    const pauseMs = POLICY.rateLimitPauseS * 1000;
    sending.inFlight = null;
    sending.pausedUntil = performance.now() + pauseMs;
    clearTimeout(timers.resend);
    timers.resend = setTimeout(sendDue, pauseMs);
  }

  function refuseInFlight(error) {
    // A field the server will never take (its limits are not the page's): the
    // message cannot be delivered, so it leaves the outbox and the next one goes.
    const refused = chat.outbox.find((item) => item.clientMessageId === sending.inFlight);
    sending.inFlight = null;
    if (refused === undefined) return;
    chat.outbox = chat.outbox.filter((item) => item !== refused);
    saveOutbox();
    systemLine(view.refusedItem(refused, neutralize(error.detail ?? "")));
    sendDue();
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
      sending.inFlight = null; // resent, from the oldest, after the next connected
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
        chat.users = new Map(event.connectedUserList.map((u) => [u.id, userOf(u)]));
        if (!chat.users.has(chat.id)) chat.users.set(chat.id, userOf(event)); // we are here
        chat.truncated = event.truncated === true;
        chat.wasPageReload = event.wasPageReload === true;
        enterRoom(event.roomId ?? null);
        renderUsers();
        for (const entry of event.messagesList) addMessage(entry);
        chat.error = null;
        chat.failedAttempts = 0;
        chat.reconnector.afterConnected(nowS());
        setState("online");
        sending.inFlight = null;
        sendDue();
        return;
      }
      case "joined":
        chat.users.set(event.id, userOf(event));
        renderUsers();
        systemLine(view.presenceItem("joined", shownName(event.id, event.username)));
        return;
      case "disconnected": {
        // Our own socket is open, so we are present: a server that froze past its
        // heartbeat may say otherwise, and the `joined` that follows is not sent to
        // us. A connected page keeps listing itself.
        if (event.id === chat.id) return;
        const name = shownName(event.id, event.username);
        chat.users.delete(event.id);
        renderUsers();
        systemLine(view.presenceItem("disconnected", name));
        return;
      }
      case "presence": {
        // Left first, then joined: an id in both was taken by a new user in the tick.
        // Never ourselves among the left: our socket is open (as for `disconnected`).
        const others = event.left.filter((u) => u.id !== chat.id);
        const left = others.map((u) => shownName(u.id, u.username));
        for (const u of others) chat.users.delete(u.id);
        for (const u of event.joined) chat.users.set(u.id, userOf(u));
        renderUsers();
        for (const name of left) systemLine(view.presenceItem("disconnected", name));
        for (const u of event.joined) systemLine(view.presenceItem("joined", shownName(u.id, u.username)));
        return;
      }
      case "messageWritten":
        // Only `message` matters; a seed-compatible `messagesList` would repeat history.
        if (event.message) addMessage(event.message);
        return;
      // Classroom mode (serve --hub): a teacher's moderation, as system lines.
      case "muted":
      case "unmuted":
        systemLine(make("li", "system", `${neutralizeName(event.username)} was ${event.event} by a teacher`));
        return;
      case "cleared":
        // The history is gone for everyone: drop ours, and count ids in the new room.
        flushRender();
        for (const node of el.messages.querySelectorAll(CURRENT)) node.remove();
        chat.messages = [];
        chat.byMessageId.clear();
        chat.roomId = event.roomId;
        systemLine(make("li", "divider", "a teacher cleared the chat"));
        return;
      case "error":
        chat.error = { code: event.code, detail: event.detail };
        if (event.code === "rate_limited") pauseSending();
        // After connected the page sends only writeMessage, one at a time: a field
        // error is about the message on the wire.
        if (event.code === "invalid_field" && sending.inFlight !== null) refuseInFlight(event);
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
    chat.outbox.push({ clientMessageId: randomId(), message: text });
    saveOutbox();
    sendDue(); // goes out at once only if no older message is still unacknowledged
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
    get users() { return Array.from(chat.users.values(), (u) => (u.tag ? { ...u } : { id: u.id, username: u.username })); },
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
    config: CONFIG,
    display: view,
    Reconnector,
    describeClose,
    socketUrlFor,
  });

  // ---------------------------------------------------------------------------
  // Start: join at once with ?username=NAME, else ask for a name.
  // ---------------------------------------------------------------------------
  const nameFromUrl = (new URLSearchParams(location.search).get("username") || "").trim();
  renderStatus();
  if (CONFIG.classroom) {
    join("classroom"); // the hub says who we are: the server ignores the name we send
  } else if (nameFromUrl) {
    join(nameFromUrl);
  } else {
    el.nameForm.hidden = false;
    el.nameInput.focus();
  }
})();
