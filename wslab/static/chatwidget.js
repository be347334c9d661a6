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

// The widget's elements: a status block, the users beside the messages, the box.
function layout() {
  const make = wslabView.make;
  const ui = {
    root: make("div", "wslab-chat"),
    status: make("div", "wslab-status"),
    badge: make("span", "wslab-badge"),
    who: make("span", "wslab-who"),
    detail: make("div", "wslab-detail"),
    notice: make("div", "wslab-truncated"),
    error: make("div", "wslab-error"),
    note: make("div", "wslab-notice"),
    count: make("div", "wslab-heading"),
    users: make("ul", "wslab-users"),
    messages: make("ol", "wslab-messages"),
    empty: make("div", "wslab-empty", "No messages yet."),
    form: make("form", "wslab-form"),
    input: make("input", "wslab-input"),
    send: make("button", "wslab-send", "Send"),
    log: make("div", "wslab-log"),
    logText: make("pre", "wslab-log-text"),
  };
  ui.status.append(ui.badge, ui.who, ui.detail, ui.notice, ui.error, ui.note);
  const people = make("section", "wslab-people");
  people.append(ui.count, ui.users);
  const conversation = make("section", "wslab-conversation");
  conversation.append(ui.messages, ui.empty);
  const body = make("div", "wslab-body");
  body.append(people, conversation);
  ui.input.type = "text";
  ui.input.autocomplete = "off";
  ui.input.placeholder = "Type a message and press Enter";
  ui.input.setAttribute("aria-label", "Message");
  ui.send.type = "submit";
  ui.form.append(ui.input, ui.send);
  ui.log.append(make("div", "wslab-heading", "RAW EVENTS (newest last)"), ui.logText);
  ui.root.append(ui.status, body, ui.form, ui.log);
  return ui;
}

// One view of the model: draws each trait when it changes, sends what is typed.
class ChatView {
  constructor(model, el) {
    const config = model.get("config");
    this.model = model;
    this.view = wslabView.rules(config.display, config.policy.closeMeanings);
    this.ui = layout();
    this.names = new Map(); // id -> the name as shown
    this.retryAt = 0;
    this.countdown = null;
    this.sent = 0;
    this.waiting = new Map(); // message number -> the text it carried
    el.append(this.ui.root);
    this.listen();
    this.onStatus();
    this.drawUsers();
    this.drawMessages();
    this.drawLog();
  }

  listen() {
    const { form, input } = this.ui;
    form.addEventListener("submit", (event) => {
      event.preventDefault(); // stay on the page
      this.submit();
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
          this.submit();
        }
      });
    }
    const drawMessages = () => this.drawMessages();
    const drawLog = () => this.drawLog();
    this.handlers = [
      ["change:status", () => { this.onStatus(); this.drawUsers(); }],
      ["change:users", () => this.drawUsers()],
      ["change:messages", drawMessages],
      ["change:presence", drawMessages],
      ["change:pending", drawMessages],
      ["change:cut", drawMessages],
      ["change:log", drawLog],
      ["change:show_log", drawLog],
      ["msg:custom", (message) => this.onMessage(message)],
    ];
    for (const [name, handler] of this.handlers) this.model.on(name, handler);
  }

  destroy() {
    clearInterval(this.countdown);
    for (const [name, handler] of this.handlers) this.model.off(name, handler);
  }

  shownName(id, username) {
    return this.names.get(id) ?? this.view.neutralizeName(username);
  }

  onStatus() {
    const s = this.model.get("status");
    this.retryAt = performance.now() + (s.retryIn ?? 0) * 1000;
    clearInterval(this.countdown);
    this.countdown = s.state === "reconnecting" ? setInterval(() => this.drawStatus(), 100) : null;
    this.drawStatus();
  }

  drawStatus() {
    const { ui, view } = this;
    const s = this.model.get("status");
    const text = view.statusText({ ...s, retryIn: (this.retryAt - performance.now()) / 1000 });
    for (const node of [ui.root, ui.status, ui.badge]) node.dataset.state = s.state;
    ui.badge.textContent = text.badge;
    ui.who.textContent = ` ${view.neutralizeName(s.username)} on ${s.url}`;
    ui.detail.textContent = text.detail;
    ui.notice.textContent = text.notice;
    ui.error.textContent = text.error;
    ui.note.textContent = s.notice || "";
    for (const node of [ui.detail, ui.notice, ui.error, ui.note]) node.hidden = !node.textContent;
    const offline = s.state === "offline";
    ui.input.disabled = offline;
    ui.send.disabled = offline;
  }

  drawUsers() {
    const { ui, view } = this;
    this.names = view.displayNames(this.model.get("users").map((u) => [u.id, u.username, u.tag]));
    ui.count.textContent = `USERS (${this.names.size})`;
    ui.users.replaceChildren(...view.userItems(this.names, this.model.get("status").id));
    view.renameAuthors(ui.messages, (id, username) => this.shownName(id, username));
  }

  drawMessages() {
    const { ui, view, model } = this;
    const s = model.get("status");
    const list = ui.messages;
    // Stay at the bottom if the reader was there; leave them alone if they scrolled up.
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const items = orderItems(model.get("messages"), model.get("presence"), model.get("cut"));
    const wanted = items.map(({ key, message, presence }) => [
      key,
      message
        ? () => view.messageItem(message, this.shownName(message.id, message.username), message.id === s.id)
        : () => view.presenceItem(presence.kind, this.shownName(presence.id, presence.username)),
    ]);
    const me = view.neutralizeName(s.username);
    for (const item of model.get("pending")) {
      wanted.push([`q:${item.clientMessageId}`, () => view.pendingItem(item, me)]);
    }
    reconcile(list, wanted);
    ui.empty.hidden = wanted.length > 0;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  drawLog() {
    const { ui, model } = this;
    ui.log.hidden = !model.get("show_log");
    const lines = model.get("log");
    ui.logText.textContent = lines.length ? lines.join("\n") : "(none yet)";
    ui.logText.scrollTop = ui.logText.scrollHeight;
  }

  // Sending: the text as the learner sees it now, in one message (see the top).
  submit() {
    const { input } = this.ui;
    const text = input.value;
    if (text.trim() === "" || input.disabled) return;
    this.sent += 1;
    this.waiting.set(this.sent, text);
    this.model.send({ kind: "send", text, n: this.sent });
  }

  onMessage(message) {
    if (!message || message.kind !== "sent" || !this.waiting.has(message.n)) return;
    const text = this.waiting.get(message.n);
    this.waiting.delete(message.n);
    if (message.ok && this.ui.input.value === text) this.ui.input.value = "";
  }
}

function render({ model, el }) {
  const view = new ChatView(model, el);
  return () => view.destroy();
}

export default { render };
