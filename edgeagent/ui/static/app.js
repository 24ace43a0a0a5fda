// The kiosk's page: the daemon's typed events (edgeagent.events, as JSON) drawn as state, captions,
// timers and controls.  One EventSource stream, resumed after a reconnect; controls are JSON POSTs
// that act through the same paths as the fleet's commands.
"use strict";

const KEEP_EXCHANGES = 3;
const LAG_KEEP = 2000;
const $ = (id) => document.getElementById(id);

const view = {
  state: "starting",
  voiceLoop: false,
  muted: false,
  micOk: true,
  controls: false,
  tokenSet: false,
  text: true,
  wakeWords: [],
  exchanges: new Map(),   // turn id -> {el, user, agent: [finished segments], live: current segment}
  timers: [],
  clockOffset: 0,         // device clock minus this browser's (seconds)
  lastId: "",
  replayUpTo: 0,          // messages up to this seq were sent on connecting: not measured
};

// The page's own measure of how late it shows an event (ms from the event's time on the device to
// the DOM updated, and to the next frame drawn); also shown with ?debug.
window.edgeagentLag = [];

// ------------------------------------------------------------------ the stream

const token = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {  // kept for this tab only, and out of the address bar
    sessionStorage.setItem("edgeagent-token", given);
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }
  return sessionStorage.getItem("edgeagent-token") || "";
})();

let source = null;

function connect() {
  const url = "events" + (view.lastId ? "?last_id=" + encodeURIComponent(view.lastId) : "");
  source = new EventSource(url);
  source.onmessage = (e) => {
    if (e.lastEventId) view.lastId = e.lastEventId;
    handle(JSON.parse(e.data));
  };
  source.onerror = () => {
    $("offline").hidden = false;
    if (source.readyState === EventSource.CLOSED) {  // the browser gave up: start a new one, resuming
      source = null;
      setTimeout(connect, 1000);
    }
  };
}

function handle(msg) {
  const apply = HANDLERS[msg.type];
  if (!apply) return;
  apply(msg);
  if (msg.seq && msg.seq > view.replayUpTo && msg.at) measure(msg);
}

function measure(msg) {  // the device's clock is this browser's: the device's own screen
  const at = msg.at * 1000;
  const dom = performance.timeOrigin + performance.now() - at;
  const entry = { type: msg.type, dom: dom, frame: null, daemon: (msg.sent - msg.at) * 1000 };
  window.edgeagentLag.push(entry);
  if (window.edgeagentLag.length > LAG_KEEP) window.edgeagentLag.shift();
  requestAnimationFrame(() => { entry.frame = performance.timeOrigin + performance.now() - at; });
  if (debug) debug.textContent = `${msg.type} ${dom.toFixed(1)} ms`;
}

const HANDLERS = {
  hello(msg) {
    $("offline").hidden = true;
    view.controls = msg.controls;
    view.tokenSet = msg.token_set;
    view.text = msg.text;
    view.wakeWords = msg.wake_words || [];
    view.clockOffset = msg.server_time - Date.now() / 1000;
    view.replayUpTo = msg.seq;
    document.body.dataset.stream = msg.resumed ? "resumed" : "fresh";
    if (!msg.resumed) reset();
    drawControls();
    drawState();
  },
  DeviceState(msg) {
    view.voiceLoop = msg.voice_loop;
    view.muted = msg.mute;
    if (!view.voiceLoop) view.state = "starting";
    else if (view.state === "starting") view.state = msg.state;
    if (document.activeElement !== $("volume")) $("volume").value = msg.volume;
    drawControls();
    drawState();
  },
  StateChanged(msg) {
    view.state = msg.new;
    drawState();
    drawControls();
  },
  TranscriptPartial(msg) { setUser(msg.turn, msg.text, true); },
  TranscriptFinal(msg) {
    if (msg.text === "") { drop(msg.turn); return; }  // nothing was said: no exchange to show
    setUser(msg.turn, msg.text, false);
  },
  Spoken(msg) {
    const x = exchange(msg.turn);
    x.live = { text: msg.text, stopped: msg.stopped };
    drawAgent(x);
  },
  ReplyDone(msg) { closeSegment(msg.turn); },
  ReplyFailed(msg) { closeSegment(msg.turn); },
  BargeIn(msg) { view.exchanges.get(msg.turn)?.el.classList.add("barged-in"); },
  MicrophoneStatus(msg) {
    view.micOk = msg.ok;
    drawState();
    $("mic-missing").hidden = msg.ok;
    $("mic-detail").textContent = msg.ok ? "" : `(${msg.detail}) Plug one in: it is picked up by itself.`;
  },
  TimersChanged(msg) {
    view.timers = msg.timers;
    drawTimers();
  },
};

// ------------------------------------------------------------------ captions

function reset() {
  view.exchanges.clear();
  $("conversation").replaceChildren();
}

// An exchange (one turn: the user's words, the agent's) appears with its first words, not when
// listening starts: an empty follow-up window pushes nothing off the screen.
function exchange(turn) {
  let x = view.exchanges.get(turn);
  if (x) return x;
  const el = document.createElement("article");
  el.className = "exchange";
  el.dataset.turn = turn;
  const user = document.createElement("p");
  user.className = "user";
  const agent = document.createElement("p");
  agent.className = "agent";
  el.append(user, agent);
  $("conversation").append(el);
  x = { el, userEl: user, agentEl: agent, agent: [], live: null };
  view.exchanges.set(turn, x);
  while (view.exchanges.size > KEEP_EXCHANGES) drop(view.exchanges.keys().next().value);
  return x;
}

function drop(turn) {
  const x = view.exchanges.get(turn);
  if (!x) return;
  x.el.remove();
  view.exchanges.delete(turn);
}

function shown(text) {
  return text === null ? "…" : text;  // null: captions stay on the device's own screen
}

function setUser(turn, text, partial) {
  const x = exchange(turn);
  x.userEl.textContent = shown(text);
  x.userEl.classList.toggle("partial", partial);
}

function closeSegment(turn) {
  const x = view.exchanges.get(turn);
  if (!x || !x.live) return;
  x.agent.push(x.live);  // an apology after a failure, or an announcement, starts a new segment
  x.live = null;
  drawAgent(x);
}

function drawAgent(x) {
  const segments = x.live ? x.agent.concat([x.live]) : x.agent;
  const words = segments.map((s) => shown(s.text)).filter((t) => t);
  x.agentEl.textContent = words.join(" ");
  const last = segments[segments.length - 1];
  x.agentEl.classList.toggle("cut", Boolean(last && last.stopped));
}

// ------------------------------------------------------------------ state, timers, controls

const LABELS = { starting: "Starting…", idle: "Ready", listening: "Listening…", thinking: "Thinking…", speaking: "Speaking" };

function drawState() {
  document.body.dataset.state = view.state;
  document.body.classList.toggle("muted", view.muted);
  $("state-label").textContent = view.muted && view.state === "idle" ? "Muted" : (LABELS[view.state] || view.state);
  let hint = "";
  if (view.state === "idle") {
    const wake = view.wakeWords.length ? `Say “${view.wakeWords[0]}”` : "";
    hint = view.muted ? "The microphone is off: unmute to talk." : [wake, view.controls ? "or tap to speak" : ""].filter(Boolean).join(" ");
  } else if (view.state === "starting") {
    hint = view.micOk ? "Loading the voice models." : "Waiting for a microphone.";
  }
  $("state-hint").textContent = hint;
  if (!view.text) $("state-hint").textContent += " Captions show on the device's own screen.";
}

function drawControls() {
  const can = view.controls && view.voiceLoop;
  const busy = ["listening", "thinking", "speaking"].includes(view.state);
  const talk = $("talk");
  talk.textContent = busy ? "Stop" : "Tap to speak";
  talk.classList.toggle("stop", busy);
  talk.disabled = !can || (!busy && view.muted);
  const mute = $("mute");
  mute.disabled = !view.controls;
  mute.setAttribute("aria-pressed", String(view.muted));
  mute.textContent = view.muted ? "Unmute" : "Mute";
  for (const id of ["volume", "volume-down", "volume-up"]) $(id).disabled = !view.controls;
  if (!view.controls) {
    $("notice").textContent = view.tokenSet ? "The controls need the access token (open the page with ?token=…)."
      : "The controls work on the device's own screen only.";
  }
}

let timerTick = null;

function drawTimers() {
  const list = $("timer-list");
  const now = Date.now() / 1000 + view.clockOffset;
  const running = view.timers.filter((t) => t.ends_at > now);
  $("timers").hidden = running.length === 0;
  list.replaceChildren(...running.map((t) => {
    const li = document.createElement("li");
    const left = document.createElement("span");
    left.className = "left";
    left.textContent = clock(t.ends_at - now);
    li.append(left, t.label);
    return li;
  }));
  if (running.length && !timerTick) timerTick = setInterval(drawTimers, 1000);
  if (!running.length && timerTick) { clearInterval(timerTick); timerTick = null; }
}

function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

async function control(name, args) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  try {
    const response = await fetch("api/" + name, { method: "POST", headers, body: JSON.stringify(args || {}) });
    const result = await response.json();
    $("notice").textContent = result.ok ? "" : result.error;
    return result;
  } catch (err) {
    $("notice").textContent = "The agent did not answer.";
    return { ok: false };
  }
}

function setVolume(value) {
  const volume = Math.min(1, Math.max(0, Math.round(value * 100) / 100));
  $("volume").value = volume;
  control("volume", { volume });
}

$("talk").addEventListener("click", () => {
  const busy = ["listening", "thinking", "speaking"].includes(view.state);
  control(busy ? "cancel" : "listen");
});
$("mute").addEventListener("click", () => control("mute", { mute: !view.muted }));
$("volume").addEventListener("change", (e) => setVolume(Number(e.target.value)));
$("volume-down").addEventListener("click", () => setVolume(Number($("volume").value) - 0.1));
$("volume-up").addEventListener("click", () => setVolume(Number($("volume").value) + 0.1));

const debug = new URLSearchParams(location.search).has("debug") ? document.createElement("p") : null;
if (debug) {
  debug.className = "banner";
  $("banners").append(debug);
}

connect();
