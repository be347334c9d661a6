// The original design's client, kept as-is for comparison. Do not copy it.
//
// A plain-JavaScript port of the original React `useSocket` hook, behaviour for
// behaviour, flaws included, so that it can run next to the kit's page (chat.js)
// against `python -m wslab serve --seed-compatible` and show what the kit fixed:
//   - its user id lives in a cookie `wsId`, created if missing, and is sent
//     alone: no token, so any page that sets the cookie becomes that user;
//   - it sends `connecting` on open and handles `connected`, `joined`,
//     `disconnected` and `messageWritten`, whose full `messagesList` replaces
//     the message list every time;
//   - it reconnects a fixed 300 ms after an unclean close only: a server restart
//     closes cleanly (1001), so it stays offline; a crash makes every page knock
//     at the same instants;
//   - it has no outbox: a message typed while offline is handed to a closed
//     socket and lost.
// Two changes from the hook, neither of which alters what it sends or when: it
// renders with textContent (the hook rendered through React, which escapes
// text too), and it records its socket events in `window.seedChat.events` for
// lessons and tests.
"use strict";

(() => {
  const RECONNECT_MS = 300;
  const COOKIE = "wsId";

  // The socket next to the page, as the kit's page does it: works at /seed and
  // behind a path prefix (Binder's /user/x/proxy/PORT/seed).
  function socketUrlFor(pageHref) {
    const url = new URL("chat", pageHref);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function readCookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return null;
  }

  // The hook's id: whatever the cookie says, else a new one written to it.
  // A cookie belongs to the host, not to a port or a tab: every tab of this
  // browser on this host is the same user.
  function cookieId() {
    let id = readCookie(COOKIE);
    if (!id) {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      document.cookie = `${COOKIE}=${encodeURIComponent(id)}; path=/`;
    }
    return id;
  }

  const state = {
    id: null,
    username: null,
    socket: null,
    users: [], // [{ id, username }], as the server last said
    messages: [], // the last messagesList received, as it came
    lastClose: null,
    events: [], // open | message | error | close | send, with t = Date.now()
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    me: $("me"),
    users: $("users"),
    messages: $("messages"),
    form: $("message-form"),
    input: $("message-input"),
    nameForm: $("name-form"),
    nameInput: $("name-input"),
    chat: $("chat"),
  };

  function log(type, fields) {
    state.events.push({ type, t: Date.now(), ...fields });
  }

  function make(tag, text) {
    const node = document.createElement(tag);
    node.textContent = text;
    return node;
  }

  const READY_STATES = ["connecting", "online", "closing", "offline"];
  function render() {
    const readyState = state.socket ? state.socket.readyState : WebSocket.CLOSED;
    el.status.dataset.state = READY_STATES[readyState];
    let text = READY_STATES[readyState];
    if (state.lastClose) text += ` (last close ${state.lastClose.code})`;
    el.status.textContent = text;
    el.me.textContent = state.username || "";
    el.users.replaceChildren(
      ...state.users.map((user) => {
        const li = make("li", user.username);
        li.dataset.id = user.id;
        return li;
      }),
    );
    el.messages.replaceChildren(
      ...state.messages.map((entry) => {
        const li = make("li", "");
        li.dataset.messageId = String(entry.messageId);
        li.append(make("b", entry.username), make("span", `: ${entry.message}`));
        return li;
      }),
    );
  }

  function connect() {
    const socket = new WebSocket(socketUrlFor(location.href));
    state.socket = socket;

    socket.onopen = () => {
      log("open", {});
      send({ event: "connecting", id: state.id, username: state.username });
      render();
    };

    socket.onmessage = (message) => {
      log("message", { data: message.data });
      const data = JSON.parse(message.data);
      switch (data.event) {
        case "connected":
          state.users = data.connectedUserList;
          state.messages = data.messagesList;
          break;
        case "joined":
          state.users = [...state.users, { id: data.id, username: data.username }];
          break;
        case "disconnected":
          state.users = state.users.filter((user) => user.id !== data.id);
          break;
        case "messageWritten":
          // The whole history, every time: the list is replaced, never merged.
          // Without seed-compatible mode there is no messagesList and the list
          // empties (the React component failed to render instead).
          state.messages = data.messagesList || [];
          break;
        default:
          break; // `error` and anything else: the hook ignored them
      }
      render();
    };

    socket.onerror = () => {
      log("error", {});
    };

    socket.onclose = (close) => {
      const { code, reason, wasClean } = close;
      log("close", { code, reason, wasClean });
      state.lastClose = { code, reason, wasClean };
      // The hook's rule: retry after a fixed delay, and only if the close was
      // unclean. A clean close (a server restart's 1001, a 1008) is the end.
      if (!wasClean) setTimeout(connect, RECONNECT_MS);
      render();
    };
  }

  // No outbox: the frame goes to whatever socket there is. A closed socket
  // drops it without an error; a connecting one throws.
  function send(payload) {
    const text = JSON.stringify(payload);
    log("send", { data: text, readyState: state.socket.readyState });
    state.socket.send(text);
  }

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el.input.value;
    if (text.trim() === "") return;
    // The hook sent the author's name with each message, too.
    send({ event: "writeMessage", message: text, username: state.username });
    el.input.value = "";
  });

  function start(username) {
    state.username = username;
    state.id = cookieId();
    el.nameForm.hidden = true;
    el.chat.hidden = false;
    connect();
    render();
  }

  el.nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = el.nameInput.value.trim();
    if (name === "") return;
    const url = new URL(location.href);
    url.searchParams.set("username", name);
    history.replaceState(null, "", url);
    start(name);
  });

  // A read-only window onto the state, for the console, lessons and tests.
  const copy = (value) => JSON.parse(JSON.stringify(value));
  window.seedChat = Object.freeze({
    get id() { return state.id; },
    get username() { return state.username; },
    get readyState() { return state.socket ? state.socket.readyState : WebSocket.CLOSED; },
    get users() { return copy(state.users); },
    get messages() { return copy(state.messages); },
    get lastClose() { return state.lastClose && { ...state.lastClose }; },
    get events() { return state.events; },
    socketUrlFor,
  });

  const nameFromUrl = (new URLSearchParams(location.search).get("username") || "").trim();
  if (nameFromUrl) {
    start(nameFromUrl);
  } else {
    el.nameForm.hidden = false;
    el.nameInput.focus();
    render();
  }
})();
