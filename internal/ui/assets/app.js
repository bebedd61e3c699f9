// tether's page: the sessions list and a session's conversation. Plain
// JavaScript, no build step. Everything from the stream is text: it goes
// into the page with textContent, never as HTML.
"use strict";

const T = (window.tether = { events: 0, deltas: 0, snapshots: 0, lastDelta: null, ready: false, renderMs: 0 });

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function ago(t, now) {
  if (!t || t.startsWith("0001-")) return "-";
  const s = Math.max(0, (now - Date.parse(t)) / 1000);
  if (s < 60) return s.toFixed(1) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s ago";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m ago";
}

function bytes(n) {
  if (!n) return "-";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

// The list: the server renders it, this keeps it current.
function listPage() {
  const body = document.querySelector("#sessions tbody");
  async function refresh() {
    try {
      const r = await fetch("/api/sessions", { cache: "no-store" });
      if (!r.ok) return;
      const d = await r.json();
      const now = Date.parse(d.now);
      const rows = document.createDocumentFragment();
      for (const s of d.sessions) {
        const tr = el("tr");
        tr.dataset.session = s.name;
        const a = el("a", "", s.name);
        a.href = "/sessions/" + encodeURIComponent(s.name);
        const name = el("td");
        name.append(a);
        tr.append(name, el("td", "", s.agent || ""), el("td", "phase phase-" + s.phase, s.phase), el("td", "", s.restarts),
          el("td", "", s.oomKills), el("td", "", bytes(s.memoryLimit)), el("td", "", s.lastTermination || ""),
          el("td", "", ago(s.lastSnapshot, now)), el("td", "", s.oldestUnsavedMs ? (s.oldestUnsavedMs / 1000).toFixed(1) + "s" : "-"),
          el("td", "", s.resume || ""));
        rows.append(tr);
      }
      if (!d.sessions.length) {
        const tr = el("tr", "empty");
        const td = el("td", "", "no sessions");
        td.colSpan = 10;
        tr.append(td);
        rows.append(tr);
      }
      body.replaceChildren(rows);
    } catch (e) { /* the next refresh tries again */ }
  }
  setInterval(refresh, 2000);
}

// A session: its conversation from the runner's AG-UI stream.
function sessionPage() {
  const name = document.body.dataset.session;
  const conv = document.getElementById("conversation");
  const runEl = document.getElementById("run");
  const timeline = document.getElementById("timeline");
  const msgs = new Map(); // message id -> {box, body, open}
  const tools = new Map(); // tool call id -> {box, args, result}

  let stick = true;
  window.addEventListener("scroll", () => {
    stick = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  });
  let scrollQueued = false;
  function follow() {
    if (!stick || scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => { scrollQueued = false; window.scrollTo(0, document.body.scrollHeight); });
  }

  function message(id, role, into) {
    let m = msgs.get(id);
    if (m) return m;
    const box = el("div", "msg role-" + role);
    box.dataset.id = id;
    box.append(el("div", "who", role === "user" ? "you" : role));
    const body = el("div", "body");
    box.append(body);
    (into || conv).append(box);
    m = { box, body, open: false, role };
    msgs.set(id, m);
    return m;
  }

  function tool(id, name, parentId, into) {
    let t = tools.get(id);
    if (t) return t;
    const box = el("details", "tool");
    box.dataset.id = id;
    box.append(el("summary", "", "tool: " + (name || "?")));
    const args = el("pre", "args");
    const result = el("pre", "result");
    box.append(args, result);
    const parent = parentId && msgs.get(parentId);
    if (parent && !into) parent.box.after(box); else (into || conv).append(box);
    t = { box, args, result };
    tools.set(id, t);
    return t;
  }

  function note(text, cls) {
    const li = el("li", cls || "", new Date().toLocaleTimeString() + " " + text);
    timeline.prepend(li);
  }

  // The conversation so far: the page is rebuilt from it. A message the
  // stream is in the middle of (the snapshot leaves it out) stays.
  function snapshot(list) {
    const t0 = performance.now();
    const keep = [...msgs.entries()].filter(([, m]) => m.open);
    msgs.clear();
    tools.clear();
    const frag = document.createDocumentFragment();
    for (const m of list) {
      if (m.role === "tool") {
        const t = tools.get(m.toolCallId) || tool(m.toolCallId, "", "", frag);
        t.result.textContent = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
        continue;
      }
      if (m.role !== "user" && m.role !== "assistant") continue;
      const content = typeof m.content === "string" ? m.content : "";
      if (content || !m.toolCalls) message(m.id, m.role, frag).body.textContent = content;
      for (const c of m.toolCalls || []) {
        const t = tool(c.id, c.function && c.function.name, "", frag);
        t.args.textContent = (c.function && c.function.arguments) || "";
      }
    }
    for (const [id, m] of keep) {
      frag.append(m.box);
      msgs.set(id, m);
    }
    conv.replaceChildren(frag);
    T.snapshots++;
    T.renderMs = performance.now() - t0;
    follow();
    // Ready once the browser has laid the conversation out (the frame
    // after this one); readyAt counts from the start of the navigation.
    requestAnimationFrame(() => setTimeout(() => {
      if (!T.ready) T.readyAt = performance.now();
      T.ready = true;
    }, 0));
  }

  function handle(ev) {
    T.events++;
    switch (ev.type) {
      case "MESSAGES_SNAPSHOT":
        snapshot(ev.messages || []);
        break;
      case "STATE_SNAPSHOT": {
        const s = ev.snapshot || {};
        if (s.phase) {
          const p = document.getElementById("phase");
          p.textContent = s.phase;
          p.className = "phase phase-" + s.phase;
        }
        if (s.restarts !== undefined) document.getElementById("restarts").textContent = s.restarts;
        if (s.resume) document.getElementById("resume").textContent = s.resume;
        break;
      }
      case "RUN_STARTED":
        runEl.textContent = String(ev.runId || "").startsWith("tether-") ? "idle" : "working";
        break;
      case "RUN_FINISHED":
        runEl.textContent = "idle";
        break;
      case "RUN_ERROR":
        runEl.textContent = "idle";
        note("turn ended: " + (ev.message || ev.code || "error"), "error");
        break;
      case "TEXT_MESSAGE_START": {
        const m = message(ev.messageId, ev.role || "assistant");
        m.open = true;
        m.box.classList.add("open");
        follow();
        break;
      }
      case "TEXT_MESSAGE_CONTENT": {
        const m = msgs.get(ev.messageId) || message(ev.messageId, "assistant");
        m.body.append(ev.delta);
        if (m.role !== "user") {
          T.deltas++;
          T.lastDelta = { id: ev.messageId, at: performance.now(), wall: Date.now(), text: ev.delta };
        }
        follow();
        break;
      }
      case "TEXT_MESSAGE_END": {
        const m = msgs.get(ev.messageId);
        if (m) { m.open = false; m.box.classList.remove("open"); }
        break;
      }
      case "TOOL_CALL_START":
        tool(ev.toolCallId, ev.toolCallName, ev.parentMessageId);
        follow();
        break;
      case "TOOL_CALL_ARGS": {
        const t = tools.get(ev.toolCallId);
        if (t) t.args.append(ev.delta);
        break;
      }
      case "TOOL_CALL_RESULT": {
        const t = tools.get(ev.toolCallId) || tool(ev.toolCallId, "", "");
        t.result.textContent = ev.content;
        follow();
        break;
      }
      case "CUSTOM":
        if (ev.name && ev.name.startsWith("tether.")) {
          note(ev.name.slice(7) + (ev.value ? " " + JSON.stringify(ev.value).slice(0, 200) : ""));
        }
        break;
    }
  }

  const es = new EventSource("/sessions/" + encodeURIComponent(name) + "/events");
  es.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch (err) { return; }
    handle(ev);
  };
  es.onerror = () => { runEl.textContent = "reconnecting"; };
  es.onopen = () => { if (runEl.textContent === "reconnecting" || runEl.textContent === "connecting") runEl.textContent = "connected"; };

  // The session's facts, deaths and snapshots: polled, like the list.
  const enc = encodeURIComponent(name);
  function setPhase(ph) {
    const p = document.getElementById("phase");
    p.textContent = ph;
    p.className = "phase phase-" + ph;
  }
  async function facts() {
    try {
      const r = await fetch("/api/sessions", { cache: "no-store" });
      if (!r.ok) return;
      const d = await r.json();
      const s = d.sessions.find((x) => x.name === name);
      if (!s) return;
      const now = Date.parse(d.now);
      setPhase(s.phase);
      document.getElementById("restarts").textContent = s.restarts;
      document.getElementById("oomkills").textContent = s.oomKills;
      document.getElementById("memlimit").textContent = bytes(s.memoryLimit);
      document.getElementById("lastsnap").textContent = ago(s.lastSnapshot, now);
      if (s.resume) document.getElementById("resume").textContent = s.resume;
      const list = document.createDocumentFragment();
      for (const x of s.deaths || []) {
        let t = new Date(x.time).toLocaleTimeString() + " " + x.cause + (x.detail ? ": " + x.detail : "");
        if (x.limitBefore) t += ", limit " + bytes(x.limitBefore) + (x.limitAfter && x.limitAfter !== x.limitBefore ? " → " + bytes(x.limitAfter) : "");
        t += x.recoveryMs ? ", back in " + (x.recoveryMs / 1000).toFixed(1) + "s" : ", recovering";
        list.append(el("li", "death", t));
      }
      if (!list.childNodes.length) list.append(el("li", "empty", "none"));
      document.getElementById("deaths").replaceChildren(list);
      T.phase = s.phase;
      T.deaths = (s.deaths || []).length;
    } catch (e) { /* next time */ }
  }
  setInterval(facts, 1000);

  const snapList = document.getElementById("snapshots");
  const restoreState = document.getElementById("restorestate");
  async function snapshots() {
    if (!snapList) return;
    try {
      const r = await fetch("/api/sessions/" + enc + "/snapshots", { cache: "no-store" });
      if (!r.ok) { snapList.replaceChildren(el("li", "empty", (await r.text()).trim())); return; }
      const d = await r.json();
      const items = document.createDocumentFragment();
      for (const x of d.snapshots.slice().reverse()) {
        const li = el("li", x.problem ? "bad" : "", new Date(x.time).toLocaleTimeString() + ": " + x.files + " files, " + bytes(x.bytes) +
          (x.uploaded ? ", " + bytes(x.uploaded) + " uploaded" : "") + (x.leftOut ? ", " + x.leftOut + " left out" : "") + (x.problem ? " (" + x.problem + ")" : ""));
        li.dataset.id = x.id;
        li.title = x.id;
        if (!x.problem) {
          const b = el("button", "", "restore");
          b.type = "button";
          b.addEventListener("click", () => restore(x));
          li.append(b);
        }
        items.append(li);
      }
      if (!d.snapshots.length) items.append(el("li", "empty", "none yet"));
      snapList.replaceChildren(items);
      T.snapshotList = d.snapshots.length;
    } catch (e) { /* next time */ }
  }
  async function restore(x) {
    const dir = document.getElementById("restoredir").value.trim();
    if (!dir) { restoreState.textContent = "type the directory to restore into first (absolute, missing or empty)"; return; }
    restoreState.textContent = "restoring " + x.id + "...";
    try {
      const r = await fetch("/sessions/" + enc + "/snapshots/" + encodeURIComponent(x.id) + "/restore", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ dir }),
      });
      if (r.ok) {
        const d = await r.json();
        restoreState.textContent = "restored " + d.id + " into " + d.dir + ": " + d.files + " files, " + bytes(d.bytes) + " in " + d.durationMs + " ms";
        T.restored = d;
      } else {
        restoreState.replaceChildren(el("span", "", (await r.text()).trim()));
        if (r.status === 501 && x.command) restoreState.append(el("code", "cmd", x.command.replace("DIR", dir)));
      }
    } catch (err) {
      restoreState.textContent = "not restored: " + err;
    }
  }
  if (snapList) { snapshots(); setInterval(snapshots, 3000); }

  const controlState = document.getElementById("controlstate");
  for (const what of ["suspend", "resume"]) {
    const b = document.getElementById(what);
    if (!b) continue;
    b.addEventListener("click", async () => {
      controlState.textContent = what === "suspend" ? "suspending" : "resuming";
      try {
        const r = await fetch("/sessions/" + enc + "/" + what, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
        controlState.textContent = r.status === 202 ? "" : (await r.text()).trim();
        facts();
      } catch (err) {
        controlState.textContent = what + " failed: " + err;
      }
    });
  }

  const form = document.getElementById("send");
  const text = document.getElementById("text");
  const state = document.getElementById("sendstate");
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = text.value;
    if (!msg.trim()) return;
    state.textContent = "sending";
    try {
      const r = await fetch("/sessions/" + encodeURIComponent(name) + "/messages", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: msg }),
      });
      if (r.status === 202) { text.value = ""; state.textContent = "sent"; }
      else state.textContent = (await r.text()).trim();
    } catch (err) {
      state.textContent = "not sent: " + err;
    }
  });
}

if (document.body.dataset.page === "list") listPage();
if (document.body.dataset.page === "session") sessionPage();
