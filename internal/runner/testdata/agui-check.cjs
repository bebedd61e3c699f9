// agui-check.cjs runs AG-UI streams of tether's runner through the official
// TypeScript client (@ag-ui/client, @ag-ui/core from npm; hack/install-agui.sh
// installs them and NODE_PATH points at them). Used by TestAGUIConformance.
//
//   node agui-check.cjs verify FILE
//       FILE holds the raw bytes of one SSE stream. Every event must parse
//       with @ag-ui/core's EventSchemas without a field the schema lacks, and
//       the sequence must pass @ag-ui/client's verifyEvents.
//   node agui-check.cjs run URL TOKEN THREAD RUN TEXT
//       HttpAgent posts TEXT as run RUN of thread THREAD to URL and runs the
//       stream through its own pipeline (schemas, verifyEvents, apply).
//   node agui-check.cjs connect URL TOKEN
//       connectAgent() of TetherAgent, an HttpAgent whose connect() is the
//       runner's GET /agui/events?snapshot=1: the conversation so far
//       (MESSAGES_SNAPSHOT) through the client's own pipeline, ending with
//       the first run that ends.
//
// Prints one JSON object: {"events": n, "types": [...], "errors": [...]}.
"use strict";
const fs = require("fs");
const { HttpAgent, verifyEvents, runHttpRequest, transformHttpEventStream, EventType } = require("@ag-ui/client");
const { EventSchemas } = require("@ag-ui/core/schemas");
const { from, lastValueFrom } = require("rxjs");
const { toArray, takeWhile } = require("rxjs/operators");

// TetherAgent is what a client needs for connectAgent() against tether's
// runner: HttpAgent leaves connect() unimplemented, and the runner's
// replay with ?snapshot=1 is what it asks for. The stream is live; this
// connect ends at the first run that ends (for a client between turns, the
// short run holding the snapshot).
class TetherAgent extends HttpAgent {
  connect() {
    const url = this.url.replace(/\/agui$/, "") + "/agui/events?snapshot=1";
    const init = { method: "GET", headers: { ...this.headers, Accept: "text/event-stream" }, signal: this.abortController.signal };
    return transformHttpEventStream(runHttpRequest(() => this.fetch(url, init))).pipe(
      takeWhile((ev) => ev.type !== EventType.RUN_FINISHED && ev.type !== EventType.RUN_ERROR, true));
  }
}

// parseSSE splits an SSE stream into the data of its events, as an
// EventSource does: fields per line, data lines joined by "\n", an event
// dispatched at a blank line.
function parseSSE(text) {
  const out = [];
  let data = null;
  let named = false;
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      if (data !== null) out.push({ data: data.join("\n"), named });
      data = null;
      named = false;
      continue;
    }
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") (data = data || []).push(value);
    if (field === "event") named = true;
  }
  return out;
}

// The fields each event type's schema names: the schemas pass unknown
// fields through, so a field the protocol lacks (RUN_ERROR's runId, say)
// is only seen by comparing.
const fields = {};
for (const o of EventSchemas.options) {
  const t = o.shape.type;
  const name = t.value !== undefined ? t.value : t.def && t.def.values && t.def.values[0];
  fields[name] = new Set(Object.keys(o.shape));
}

function extraKeys(raw) {
  const known = fields[raw.type];
  return known ? Object.keys(raw).filter((k) => !known.has(k)) : [];
}

async function verify(file) {
  const errors = [];
  const evs = [];
  parseSSE(fs.readFileSync(file, "utf8")).forEach((f, i) => {
    if (f.named) errors.push(`event ${i}: has an "event:" field, so an EventSource's onmessage never sees it`);
    let raw;
    try {
      raw = JSON.parse(f.data);
    } catch (e) {
      errors.push(`event ${i}: data is not JSON: ${e.message}`);
      return;
    }
    const r = EventSchemas.safeParse(raw);
    if (!r.success) {
      errors.push(`event ${i} (${raw.type}): schema: ${r.error.message.slice(0, 400)}`);
      return;
    }
    const extra = extraKeys(raw);
    if (extra.length) errors.push(`event ${i} (${raw.type}): fields the schema lacks: ${extra.join(", ")}`);
    evs.push(r.data);
  });
  try {
    await lastValueFrom(from(evs).pipe(verifyEvents(false), toArray()), { defaultValue: [] });
  } catch (e) {
    errors.push(`verifyEvents: ${e.message}`);
  }
  return { events: evs.length, types: evs.map((e) => e.type), errors };
}

async function run(url, token, thread, runId, text) {
  const agent = new HttpAgent({ url, headers: { Authorization: "Bearer " + token }, threadId: thread });
  agent.messages = [{ id: "msg-" + runId, role: "user", content: text }];
  const types = [];
  const errors = [];
  try {
    await agent.runAgent({ runId }, { onEvent: ({ event }) => { types.push(event.type); } });
  } catch (e) {
    errors.push(`runAgent: ${e.message}`);
  }
  return { events: types.length, types, errors, messages: agent.messages.map((m) => ({ role: m.role, content: m.content })) };
}

async function connect(url, token) {
  const agent = new TetherAgent({ url, headers: { Authorization: "Bearer " + token } });
  const types = [];
  const errors = [];
  try {
    await agent.connectAgent({}, { onEvent: ({ event }) => { types.push(event.type); } });
  } catch (e) {
    errors.push(`connectAgent: ${e.message}`);
  }
  // The stream is live: ending the observable does not end the request.
  agent.abortController.abort();
  return { events: types.length, types, errors, messages: agent.messages.map((m) => ({ role: m.role, content: m.content })) };
}

(async () => {
  const [mode, ...args] = process.argv.slice(2);
  const modes = { verify: () => verify(args[0]), run: () => run(...args), connect: () => connect(...args) };
  const res = modes[mode] ? await modes[mode]() : { errors: ["unknown mode " + mode] };
  process.stdout.write(JSON.stringify(res) + "\n");
})().catch((e) => {
  process.stdout.write(JSON.stringify({ errors: ["agui-check: " + (e && e.stack || e)] }) + "\n");
});
