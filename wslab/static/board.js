// The teacher's board (wslab.classroom.widget.Board), run by anywidget; no build step.
//
// The kernel holds the state in traits: status (state, username, role, url, notice,
// error), exercises (the columns, in the order the class first checked them) and
// rows (one per student: id, username, online, muted, verdicts {exercise: passed}).
// Every user string is set with textContent, never as HTML.
//
// A button sends {kind: "action", action, id?, text?, n} to the kernel, which runs
// the teacher's action and answers {kind: "done", n, ok}; the announcement box is
// cleared only when its text was taken.
"use strict";

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, title, onClick) {
  const node = make("button", "wslab-board-button", label);
  node.type = "button";
  node.title = title;
  node.addEventListener("click", onClick);
  return node;
}

class BoardView {
  constructor(model, el) {
    this.model = model;
    this.sent = 0;
    this.waiting = new Map(); // message number -> the announcement text it carried
    this.root = make("div", "wslab-board");
    this.status = make("div", "wslab-board-status");
    this.badge = make("span", "wslab-board-badge");
    this.who = make("span", "wslab-board-who");
    this.note = make("div", "wslab-board-note");
    this.status.append(this.badge, this.who, this.note);
    this.count = make("div", "wslab-board-count");
    this.table = make("table", "wslab-board-table");
    this.empty = make("div", "wslab-board-empty", "No student online or checked yet.");
    this.form = make("form", "wslab-board-form");
    this.input = make("input", "wslab-board-input");
    this.input.type = "text";
    this.input.placeholder = "An announcement to everyone";
    this.input.setAttribute("aria-label", "Announcement");
    this.announceButton = make("button", "wslab-board-button", "Announce");
    this.announceButton.type = "submit";
    this.clearButton = button("Clear chat", "Empty the chat's history for everyone", () =>
      this.act({ action: "clear" }),
    );
    this.form.append(this.input, this.announceButton, this.clearButton);
    this.root.append(this.status, this.count, this.table, this.empty, this.form);
    el.append(this.root);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.announce();
    });
    // Keys typed in the box are the box's, not JupyterLab's notebook shortcuts.
    for (const type of ["keydown", "keypress", "keyup"]) {
      this.input.addEventListener(type, (event) => {
        if (!event.ctrlKey && !event.metaKey) event.stopPropagation();
        if (type === "keydown" && event.key === "Enter" && !event.isComposing) {
          event.preventDefault();
          this.announce();
        }
      });
    }
    this.handlers = [
      ["change:status", () => this.drawStatus()],
      ["change:exercises", () => this.drawTable()],
      ["change:rows", () => this.drawTable()],
      ["msg:custom", (message) => this.onMessage(message)],
    ];
    for (const [name, handler] of this.handlers) this.model.on(name, handler);
    this.drawStatus();
    this.drawTable();
  }

  destroy() {
    for (const [name, handler] of this.handlers) this.model.off(name, handler);
  }

  drawStatus() {
    const s = this.model.get("status");
    this.root.dataset.state = s.state;
    this.badge.textContent = s.state;
    this.badge.dataset.state = s.state;
    this.who.textContent = ` ${s.username} (${s.role || "no role yet"}) on ${s.url}`;
    const notes = [];
    if (s.role === "student") notes.push("You are a student here: only teachers can moderate or see verdicts.");
    if (s.notice) notes.push(s.notice);
    if (s.error) notes.push(`Last error: ${s.error}`);
    this.note.textContent = notes.join(" ");
    this.note.hidden = notes.length === 0;
    const usable = s.state === "online" && s.role === "teacher";
    for (const node of this.root.querySelectorAll("button, input")) node.disabled = !usable;
  }

  drawTable() {
    const exercises = this.model.get("exercises");
    const rows = this.model.get("rows");
    const online = rows.filter((row) => row.online).length;
    this.count.textContent = `STUDENTS: ${online} online, ${rows.length} in all; ${exercises.length} exercises`;
    const head = make("tr");
    head.append(make("th", "", "student"));
    for (const exercise of exercises) head.append(make("th", "wslab-board-exercise", exercise));
    head.append(make("th", "", ""));
    const body = [head];
    for (const row of rows) body.push(this.rowItem(row, exercises));
    this.table.replaceChildren(...body);
    this.table.hidden = rows.length === 0;
    this.empty.hidden = rows.length > 0;
    this.drawStatus(); // the new buttons follow the state
  }

  rowItem(row, exercises) {
    const tr = make("tr", "wslab-board-row");
    tr.dataset.id = row.id;
    tr.dataset.online = String(row.online);
    const name = make("td", "wslab-board-name", row.username);
    name.title = row.online ? "online" : "not online";
    if (row.muted) name.append(make("span", "wslab-board-muted", " (muted)"));
    tr.append(name);
    for (const exercise of exercises) {
      const verdict = row.verdicts[exercise];
      const cell = make("td", "wslab-board-verdict");
      cell.dataset.exercise = exercise;
      cell.dataset.verdict = verdict === undefined ? "none" : verdict ? "pass" : "fail";
      cell.textContent = verdict === undefined ? "" : verdict ? "pass" : "FAIL";
      tr.append(cell);
    }
    const actions = make("td", "wslab-board-actions");
    const mute = row.muted ? "unmute" : "mute";
    actions.append(
      button(mute, `${mute} ${row.username}`, () => this.act({ action: mute, id: row.id })),
      button("kick", `close ${row.username}'s chat sockets (4003)`, () => this.act({ action: "kick", id: row.id })),
    );
    tr.append(actions);
    return tr;
  }

  act(message) {
    this.sent += 1;
    this.model.send({ kind: "action", n: this.sent, ...message });
    return this.sent;
  }

  announce() {
    const text = this.input.value;
    if (text.trim() === "" || this.input.disabled) return;
    this.waiting.set(this.act({ action: "announce", text }), text);
  }

  onMessage(message) {
    if (!message || message.kind !== "done" || !this.waiting.has(message.n)) return;
    const text = this.waiting.get(message.n);
    this.waiting.delete(message.n);
    if (message.ok && this.input.value === text) this.input.value = "";
  }
}

function render({ model, el }) {
  const view = new BoardView(model, el);
  return () => view.destroy();
}

export default { render };
