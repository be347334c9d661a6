// How the wslab chat shows things to a person: the display rules, written once.
//
// Both views draw through this file: the browser page (loaded before chat.js) and
// the notebook chat widget (wslab/frontend.py puts it in front of chatwidget.js,
// as one ES module). It holds rules, not numbers or words: those come from Python
// (wslab.frontend.page_config: wslab.display, wslab.retry.page_policy) as the
// `display` and `closeMeanings` given to wslabView.rules(...).
//
//   - names: a name two present users share gets "#" and each user's tag (which
//     the server derives from the id with a secret key, so that nobody can choose
//     an id to get someone else's), or the end of the id from a server that sends
//     no tag;
//   - presence lines: "bob joined", "bob left";
//   - bidi controls (which could make "gnp.exe" read "exe.png") show as U+FFFD;
//   - in names, so do the characters that show as nothing (zero width and format
//     characters, variation selectors, blank-looking letters): "admin" followed by
//     U+FE0F shows as "admin\ufffd", and counts as the same name as "admin";
//   - user text only ever reaches the DOM as textContent, never as HTML;
//   - the status: a badge, then why we are not online (the last close code and
//     its meaning), the truncated notice and the last server error.
"use strict";

const wslabView = (() => {
  // One formatter for every message: toLocaleTimeString would build one per call,
  // which costs more than the rest of a message's rendering.
  const TIME_FORMAT = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });

  function formatTime(ts) {
    const date = new Date(ts);
    if (Number.isNaN(date.getTime())) return String(ts ?? "");
    return TIME_FORMAT.format(date);
  }

  // createElement + textContent only: a username or a message such as
  // <img src=x onerror=alert(1)> must show as those characters, never run.
  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function characterClass(characters) {
    const escaped = Array.from(characters, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    return new RegExp(`[${escaped.join("")}]`, "g");
  }

  // spans: [[first, last], ...] of code points, inclusive.
  function rangeClass(spans) {
    const hex = (code) => `\\u{${code.toString(16)}}`;
    return new RegExp(`[${spans.map(([first, last]) => `${hex(first)}-${hex(last)}`).join("")}]`, "gu");
  }

  // display: page_config()["display"] (wslab.display.display_config() and the
  // unknownCloseMeaning); closeMeanings: code -> meaning.
  function rules(display, closeMeanings) {
    const controls = characterClass(display.bidiControls);
    const invisibles = rangeClass(display.nameInvisibles);
    const neutralize = (text) => String(text).replace(controls, "\ufffd");
    // A name: also what would show as nothing, so that no name hides a difference.
    const neutralizeName = (name) => neutralize(name).replace(invisibles, "\ufffd");
    // Names that read the same are one name: compatibility forms folded (NFKC), the
    // invisible characters left out, case ignored.
    const nameKey = (name) =>
      String(name).normalize("NFKC").replace(controls, "").replace(invisibles, "").toLowerCase();
    const shortSuffix = (id, tag) =>
      `#${tag ? neutralizeName(tag) : String(id).slice(-display.suffixLength)}`;

    // pairs: [[id, username, tag], ...] of the present users (tag: from the
    // server, if it sent one) -> Map id -> name as shown.
    function displayNames(pairs) {
      const counts = new Map();
      for (const [, name] of pairs) counts.set(nameKey(name), (counts.get(nameKey(name)) || 0) + 1);
      const shown = new Map();
      for (const [id, name, tag] of pairs) {
        let label = neutralizeName(name);
        if (counts.get(nameKey(name)) > 1) label += ` ${shortSuffix(id, tag)}`;
        shown.set(id, label);
      }
      return shown;
    }

    // kind: "joined" or "disconnected"; name: as shown (already neutralized).
    const presenceLine = (kind, name) =>
      `${name} ${display.presenceWords[kind] ?? display.presenceWords.disconnected}`;

    function describeClose(close) {
      const meaning = closeMeanings[close.code] || display.unknownCloseMeaning;
      const reason = close.reason ? ` "${neutralize(close.reason)}"` : "";
      return `${close.code} (${meaning})${reason}`;
    }

    // The status as text. s: { state, retryIn (seconds, while reconnecting),
    // lastClose ({ code, reason }), failedAttempts, wasPageReload, truncated,
    // error ({ code, detail }) }.
    function statusText(s) {
      let badge = s.state;
      if (s.state === "idle") badge = "not connected";
      if (s.state === "reconnecting" && typeof s.retryIn === "number") {
        badge = `reconnecting in ${Math.max(0, s.retryIn).toFixed(1)} s`;
      }
      // Say why we are not online: the close code is the lesson.
      let detail = "";
      if (s.lastClose && s.state !== "online") {
        detail = `last close ${describeClose(s.lastClose)}`;
        if (s.failedAttempts > 0) {
          const plural = s.failedAttempts === 1 ? "" : "s";
          detail += `, ${s.failedAttempts} failed attempt${plural} since`;
        }
      } else if (s.state === "online" && s.wasPageReload) {
        detail = display.reloadNotice;
      }
      return {
        badge,
        detail,
        notice: s.truncated ? display.truncatedNotice : "",
        error: s.error ? `error ${neutralize(s.error.code)}: ${neutralize(s.error.detail)}` : "",
      };
    }

    // One delivered message: li.message[data-message-id] > time.ts, .author, .text.
    function messageItem(entry, author, mine) {
      const li = make("li", mine ? "message mine" : "message");
      li.dataset.messageId = String(entry.messageId);
      li.dataset.authorId = entry.id;
      li.dataset.username = entry.username;
      const time = make("time", "ts", formatTime(entry.ts));
      time.dateTime = String(entry.ts ?? "");
      li.append(time, make("span", "author", author), make("span", "text", neutralize(entry.message)));
      return li;
    }

    // One message not yet acknowledged by the server: li.pending[data-client-message-id].
    function pendingItem(item, author) {
      const li = make("li", "message mine pending");
      li.dataset.clientMessageId = item.clientMessageId;
      li.append(
        make("span", "ts", "--:--"),
        make("span", "author", author),
        make("span", "text", neutralize(item.message)),
        make("span", "note", " (pending)"),
      );
      return li;
    }

    // A message the server refused for good: li.system[data-kind="refused"].
    function refusedItem(item, detail) {
      const why = detail ? ` (${detail})` : "";
      const li = make("li", "system", `${display.refusedNotice}${why}: ${neutralize(item.message)}`);
      li.dataset.kind = "refused";
      return li;
    }

    // A join or a leave among the messages: li.system[data-kind].
    function presenceItem(kind, name) {
      const li = make("li", "system", presenceLine(kind, name));
      li.dataset.kind = kind;
      return li;
    }

    // The user list's items: names (a Map from displayNames), yourself marked.
    function userItems(names, myId) {
      const items = [];
      for (const [id, name] of names) {
        const li = make("li", id === myId ? "me" : "", name);
        li.dataset.id = id;
        if (id === myId) li.append(make("span", "you", " (you)"));
        items.push(li);
      }
      return items;
    }

    // A name that now clashes (or no longer does) changes on the shown messages too.
    function renameAuthors(list, shownName) {
      for (const author of list.querySelectorAll("li[data-message-id] .author")) {
        const li = author.parentElement;
        const name = shownName(li.dataset.authorId, li.dataset.username);
        if (author.textContent !== name) author.textContent = name;
      }
    }

    return Object.freeze({
      display,
      neutralize,
      neutralizeName,
      nameKey,
      shortSuffix,
      displayNames,
      presenceLine,
      describeClose,
      statusText,
      messageItem,
      pendingItem,
      presenceItem,
      refusedItem,
      userItems,
      renameAuthors,
      truncatedNotice: display.truncatedNotice,
    });
  }

  return Object.freeze({ rules, make, formatTime });
})();
