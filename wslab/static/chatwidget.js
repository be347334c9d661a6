// The notebook chat widget's view (wslab.lab.widget.ChatWidget), run by anywidget.
//
// wslab/frontend.py builds the widget's ES module from chatview.js (the display
// rules, shared with the browser page) followed by this file: `wslabView` is
// declared there. The kernel holds the state in traits (config, status, users,
// messages, presence, pending, log) and this view draws it incrementally: a new
// message adds one item, the user list is patched, nothing is rebuilt per frame.
//
// Sending: Enter or Send reads the text box here, in the page, and sends that
// text to the kernel in one message. The kernel answers whether it took it; the
// box is cleared only then (and only if it still holds that text). So the text
// sent is always the text the learner saw, however fast they typed.
"use strict";

const ITEM_KEY = Symbol("wslab item key");

// Keep `list`'s children in the order of `wanted` ([key, build] pairs): items
// already shown are kept (and moved if needed), new ones built, gone ones removed.
function reconcile(list, wanted) {
  const shown = new Map();
  for (const node of list.children) shown.set(node[ITEM_KEY], node);
  let cursor = list.firstElementChild;
  for (const [key, build] of wanted) {
    let node = shown.get(key);
    if (node === undefined) {
      node = build();
      node[ITEM_KEY] = key;
    }
    shown.delete(key);
    if (node === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      list.insertBefore(node, cursor);
    }
  }
  for (const node of shown.values()) node.remove();
}

// The items of the message list, in order: presence lines where they happened,
// messages, then the pending ones. presence[i].after is the messageId of the
// newest message the client had when the line came (null: none yet).
function orderItems(messages, presence, cut) {
  const first = messages.length ? messages[0].messageId : null;
  const ids = new Set(messages.map((m) => m.messageId));
  const before = [];
  const after = new Map();
  const elsewhere = [];
  const seen = new Map();
  for (const line of presence) {
    const base = `p:${line.kind}:${line.id}:${line.after}`;
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    const keyed = { line, key: `${base}:${n}` };
    if (line.after === null || (first !== null && line.after < first)) {
      if (!(cut && first !== null)) before.push(keyed);
    } else if (ids.has(line.after)) {
      if (!after.has(line.after)) after.set(line.after, []);
      after.get(line.after).push(keyed);
    } else {
      elsewhere.push(keyed); // after a message no longer shown (recovered out of order)
    }
  }
  const items = before.map((p) => ({ presence: p.line, key: p.key }));
  for (const message of messages) {
    items.push({ message, key: `m:${message.messageId}` });
    for (const p of after.get(message.messageId) || []) items.push({ presence: p.line, key: p.key });
  }
  for (const p of elsewhere) items.push({ presence: p.line, key: p.key });
  return items;
}

function render({ model, el }) {
  const make = wslabView.make;
  const config = model.get("config");
  const view = wslabView.rules(config.display, config.policy.closeMeanings);

  const root = make("div", "wslab-chat");
  const status = make("div", "wslab-status");
  const badge = make("span", "wslab-badge");
  const who = make("span", "wslab-who");
  const detail = make("div", "wslab-detail");
  const notice = make("div", "wslab-truncated");
  const error = make("div", "wslab-error");
  const note = make("div", "wslab-notice");
  status.append(badge, who, detail, notice, error, note);

  const people = make("section", "wslab-people");
  const count = make("div", "wslab-heading");
  const users = make("ul", "wslab-users");
  people.append(count, users);
  const conversation = make("section", "wslab-conversation");
  const messages = make("ol", "wslab-messages");
  const empty = make("div", "wslab-empty", "No messages yet.");
  conversation.append(messages, empty);
  const body = make("div", "wslab-body");
  body.append(people, conversation);

  const form = make("form", "wslab-form");
  const input = make("input", "wslab-input");
  input.type = "text";
  input.autocomplete = "off";
  input.placeholder = "Type a message and press Enter";
  input.setAttribute("aria-label", "Message");
  const send = make("button", "wslab-send", "Send");
  send.type = "submit";
  form.append(input, send);

  const log = make("div", "wslab-log");
  const logTitle = make("div", "wslab-heading", "RAW EVENTS (newest last)");
  const logText = make("pre", "wslab-log-text");
  log.append(logTitle, logText);

  root.append(status, body, form, log);
  el.append(root);

  let names = new Map();
  const shownName = (id, username) => names.get(id) ?? view.neutralize(username);
  let retryAt = 0;
  let countdown = null;

  function drawStatus() {
    const s = model.get("status");
    const text = view.statusText({ ...s, retryIn: (retryAt - performance.now()) / 1000 });
    root.dataset.state = s.state;
    status.dataset.state = s.state;
    badge.dataset.state = s.state;
    badge.textContent = text.badge;
    who.textContent = ` ${view.neutralize(s.username)} on ${s.url}`;
    detail.textContent = text.detail;
    notice.textContent = text.notice;
    error.textContent = text.error;
    note.textContent = s.notice || "";
    for (const node of [detail, notice, error, note]) node.hidden = !node.textContent;
    const offline = s.state === "offline";
    input.disabled = offline;
    send.disabled = offline;
  }

  function onStatus() {
    const s = model.get("status");
    retryAt = performance.now() + (s.retryIn ?? 0) * 1000;
    clearInterval(countdown);
    countdown = s.state === "reconnecting" ? setInterval(drawStatus, 100) : null;
    drawStatus();
  }

  function drawUsers() {
    const s = model.get("status");
    names = view.displayNames(model.get("users").map((u) => [u.id, u.username]));
    count.textContent = `USERS (${names.size})`;
    users.replaceChildren(...view.userItems(names, s.id));
    view.renameAuthors(messages, shownName);
  }

  function drawMessages() {
    const s = model.get("status");
    const list = messages;
    // Stay at the bottom if the reader was there; leave them alone if they scrolled up.
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const wanted = orderItems(model.get("messages"), model.get("presence"), model.get("cut")).map(
      (item) => [
        item.key,
        item.message
          ? () => view.messageItem(item.message, shownName(item.message.id, item.message.username),
              item.message.id === s.id)
          : () => view.presenceItem(item.presence.kind, shownName(item.presence.id, item.presence.username)),
      ],
    );
    const me = view.neutralize(s.username);
    for (const item of model.get("pending")) {
      wanted.push([`q:${item.clientMessageId}`, () => view.pendingItem(item, me)]);
    }
    reconcile(list, wanted);
    empty.hidden = wanted.length > 0;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function drawLog() {
    log.hidden = !model.get("show_log");
    const lines = model.get("log");
    logText.textContent = lines.length ? lines.join("\n") : "(none yet)";
    logText.scrollTop = logText.scrollHeight;
  }

  // Sending: the text as the learner sees it now, in one message (see the top).
  let sent = 0;
  const waiting = new Map(); // message number -> the text it carried
  function submit() {
    const text = input.value;
    if (text.trim() === "" || input.disabled) return;
    sent += 1;
    waiting.set(sent, text);
    model.send({ kind: "send", text, n: sent });
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // stay on the page
    submit();
  });
  // Keys typed in the box are the box's: JupyterLab must not read them as notebook
  // shortcuts ("a" inserts a cell, Enter edits one), so they stop here. Chords with
  // Ctrl or Cmd (Ctrl+S saves) still reach JupyterLab.
  for (const type of ["keydown", "keypress", "keyup"]) {
    input.addEventListener(type, (event) => {
      if (event.ctrlKey || event.metaKey) return;
      event.stopPropagation();
      if (type === "keydown" && event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
  }
  function onMessage(message) {
    if (!message || message.kind !== "sent" || !waiting.has(message.n)) return;
    const text = waiting.get(message.n);
    waiting.delete(message.n);
    if (message.ok && input.value === text) input.value = "";
  }

  const handlers = [
    ["change:status", () => { onStatus(); drawUsers(); }],
    ["change:users", drawUsers],
    ["change:messages", drawMessages],
    ["change:presence", drawMessages],
    ["change:pending", drawMessages],
    ["change:cut", drawMessages],
    ["change:log", drawLog],
    ["change:show_log", drawLog],
    ["msg:custom", onMessage],
  ];
  for (const [name, handler] of handlers) model.on(name, handler);
  onStatus();
  drawUsers();
  drawMessages();
  drawLog();

  return () => {
    clearInterval(countdown);
    for (const [name, handler] of handlers) model.off(name, handler);
  };
}

export default { render };
