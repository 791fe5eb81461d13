// respira night monitor: the microphone, in numbered blocks over a WebSocket, to the server's
// cough detector; the running count, coughs per hour, the last events and a growing timeline.
// Survives a dropped connection: blocks stay here until the server acknowledges them, and are
// resent on reconnect. Plain JavaScript, nothing loaded from elsewhere. Protocol: docs/monitor.md.
"use strict";

const BLOCK_S = 0.5;             // seconds of audio per block
const MAX_WAITING_S = 1800;      // audio kept while offline; beyond it the recording stops
const RETRY_MS = [500, 1000, 2000, 5000, 10000];
const SHOWN_EVENTS = 20;
const BIN_S = [60, 300, 600, 900, 1800, 3600];  // timeline bins: the smallest giving at most 48 bars
const TOKEN_KEY = "respira-token";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), stop: $("stop"), level: $("level"), keep: $("keep-snippets"), token: $("token"),
  tokenBox: $("token-box"), status: $("status"), connection: $("connection"), error: $("error"),
  count: $("count"), perHour: $("per-hour"), recorded: $("recorded"), timeline: $("timeline"),
  events: document.querySelector("#events tbody"),
};

let live = null;  // the session being recorded: see newSession()

function newSession() {
  return {
    id: null, name: "", nextSeq: 0, outbox: [], socket: null, ready: false, events: [], seconds: 0,
    audio: null, block: null, filled: 0, sampleRate: 0, stopping: false, ended: false, fatal: false,
    retries: 0, offlineUntil: 0, retryTimer: 0, wakeLock: null,
  };
}

// --- messages ------------------------------------------------------------------------------

function setStatus(text) { ui.status.textContent = text; }

function showError(text) {
  ui.error.textContent = text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  ui.error.hidden = false;
}

function setConnection(text, offline) {
  ui.connection.textContent = text;
  ui.connection.classList.toggle("offline", Boolean(offline));
}

function waitingSeconds() { return live.outbox.length * BLOCK_S; }

// --- the microphone --------------------------------------------------------------------------

async function startAudio() {
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/live-worklet.js");
  const node = new AudioWorkletNode(context, "respira-tap");
  node.port.onmessage = (e) => onSamples(e.data);
  context.createMediaStreamSource(stream).connect(node);
  node.connect(context.destination);  // its output is silence; connected so that it runs
  live.audio = { stream, context, node };
  live.sampleRate = context.sampleRate;
  live.block = new Float32Array(Math.round(BLOCK_S * context.sampleRate));
}

function stopAudio() {
  const a = live.audio;
  if (!a) return;
  a.node.port.onmessage = null;
  a.stream.getTracks().forEach((t) => t.stop());
  a.context.close();
  live.audio = null;
  if (live.filled) enqueue(live.block.subarray(0, live.filled));
  ui.level.style.width = "0";
}

function onSamples(chunk) {
  showLevel(chunk);
  for (let i = 0; i < chunk.length;) {
    const n = Math.min(chunk.length - i, live.block.length - live.filled);
    live.block.set(chunk.subarray(i, i + n), live.filled);
    live.filled += n;
    i += n;
    if (live.filled === live.block.length) {
      enqueue(live.block);
      live.filled = 0;
    }
  }
}

function showLevel(chunk) {
  let peak = 0;
  for (let i = 0; i < chunk.length; i++) peak = Math.max(peak, Math.abs(chunk[i]));
  const db = 20 * Math.log10(peak + 1e-9);
  ui.level.style.width = Math.max(0, Math.min(100, (db + 60) / 60 * 100)) + "%";
}

// --- blocks ----------------------------------------------------------------------------------

function encode(seq, samples) {
  const data = new ArrayBuffer(4 + 2 * samples.length);
  new DataView(data).setUint32(0, seq, true);
  const pcm = new Int16Array(data, 4, samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.round(Math.max(-1, Math.min(1, samples[i])) * 32767);
  return data;
}

function enqueue(samples) {
  const block = { seq: live.nextSeq++, data: encode(live.nextSeq - 1, samples) };
  live.outbox.push(block);
  if (live.ready) live.socket.send(block.data);
  else if (live.audio && waitingSeconds() > MAX_WAITING_S) giveUp("offline for too long: the recording stopped");
  if (!live.ready) setConnection(`Offline: ${Math.round(waitingSeconds())} s of audio waiting to be sent…`, true);
}

// --- the connection --------------------------------------------------------------------------

function connect() {
  clearTimeout(live.retryTimer);
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/api/v1/live");
  live.socket = socket;
  socket.onopen = () => socket.send(JSON.stringify({
    type: "hello", session: live.id, sample_rate: live.sampleRate, format: "s16le",
    keep_snippets: ui.keep.checked, token: ui.token.value.trim() || undefined,
  }));
  socket.onmessage = (e) => { if (socket === live.socket) onMessage(JSON.parse(e.data)); };
  socket.onclose = () => { if (socket === live.socket) onClose(); };
}

function onMessage(m) {
  if (m.type === "session") {
    Object.assign(live, { id: m.id, name: m.name, ready: true, retries: 0, events: m.events, seconds: m.seconds });
    live.outbox = live.outbox.filter((b) => b.seq >= m.next_seq);
    live.outbox.forEach((b) => live.socket.send(b.data));
    if (live.stopping) live.socket.send(JSON.stringify({ type: "end" }));
    setConnection(`Connected: session ${m.id} (${m.name}), model ${m.model}.`);
  } else if (m.type === "event") {
    live.events.push(m);
  } else if (m.type === "ack") {
    live.outbox = live.outbox.filter((b) => b.seq > m.seq);
    live.seconds = m.seconds;
  } else if (m.type === "ended") {
    live.ended = true;
    live.seconds = m.session.seconds_analysed;
    setStatus(`Finished: session ${m.session.id} '${m.session.name}' is stored (respira report ${m.session.id}).`);
    finish();
  } else if (m.type === "error") {
    live.fatal = true;
    if (/token/.test(m.message)) ui.tokenBox.open = true;
    showError(m.message);
  }
  render();
}

function onClose() {
  live.ready = false;
  if (live.ended) return;
  if (live.fatal) {
    giveUp(null);
    return;
  }
  const delay = Math.max(RETRY_MS[Math.min(live.retries, RETRY_MS.length - 1)], live.offlineUntil - Date.now());
  live.retries++;
  live.retryTimer = setTimeout(connect, delay);
  setConnection(`Offline: ${Math.round(waitingSeconds())} s of audio waiting; reconnecting…`, true);
}

function giveUp(reason) {
  if (reason) showError(reason);
  stopAudio();
  if (live.socket) live.socket.close();
  finish();
  setStatus("Stopped.");
}

// --- start and stop --------------------------------------------------------------------------

async function start() {
  ui.error.hidden = true;
  ui.start.disabled = true;
  live = newSession();
  render();
  try {
    await startAudio();
  } catch (e) {
    showError("cannot record from the microphone: " + e.message);
    ui.start.disabled = false;
    return;
  }
  connect();
  ui.stop.disabled = false;
  ui.start.classList.add("recording");
  setStatus("Listening. Leave this page open; press Stop in the morning.");
  keepAwake();
}

function stop() {
  ui.stop.disabled = true;
  live.stopping = true;
  stopAudio();
  setStatus("Finishing: the last seconds are being analysed…");
  if (live.ready) live.socket.send(JSON.stringify({ type: "end" }));
}

function finish() {
  clearTimeout(live.retryTimer);
  if (live.wakeLock) live.wakeLock.release().catch(() => {});
  live.wakeLock = null;
  ui.start.disabled = false;
  ui.stop.disabled = true;
  ui.start.classList.remove("recording");
  setConnection(live.ended ? "" : ui.connection.textContent, !live.ended);
}

async function keepAwake() {
  if (!("wakeLock" in navigator)) {
    setStatus("Listening. This browser cannot keep the screen on: turn off screen sleep.");
    return;
  }
  try {
    live.wakeLock = await navigator.wakeLock.request("screen");
  } catch (e) { /* refused (page hidden, power saving): asked again when the page is shown */ }
}

function recording() { return live !== null && live.audio !== null; }

// --- the figures -----------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.floor(seconds);
  const two = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
}

function render() {
  const n = live.events.length;
  ui.count.textContent = String(n);
  ui.count.dataset.count = String(n);
  ui.recorded.textContent = clock(live.seconds);
  ui.perHour.textContent = live.seconds >= 60 ? (n / (live.seconds / 3600)).toFixed(1) : "–";
  ui.events.replaceChildren(...live.events.slice(-SHOWN_EVENTS).reverse().map(eventRow));
  drawTimeline();
}

function eventRow(e) {
  const row = document.createElement("tr");
  const cells = [new Date(e.wall_time).toLocaleTimeString(), e.start.toFixed(2), (e.end - e.start).toFixed(2),
    e.score.toFixed(2)];
  cells.forEach((text) => {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  });
  return row;
}

function drawTimeline() {
  const canvas = ui.timeline;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  const g = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const span = Math.max(live.seconds, 600);
  const bin = BIN_S.find((b) => span / b <= 48) || 3600;
  const counts = new Array(Math.ceil(span / bin)).fill(0);
  live.events.forEach((e) => { counts[Math.min(counts.length - 1, Math.floor(e.start / bin))]++; });
  const top = Math.max(1, ...counts);
  const w = canvas.width, h = canvas.height, axis = 18 * ratio, barW = w / counts.length;
  g.clearRect(0, 0, w, h);
  g.fillStyle = style.getPropertyValue("--accent");
  counts.forEach((c, i) => {
    const barH = (h - axis - 4 * ratio) * c / top;
    g.fillRect(i * barW + 1, h - axis - barH, Math.max(1, barW - 2), barH);
  });
  g.fillStyle = style.getPropertyValue("--muted");
  g.font = `${11 * ratio}px system-ui, sans-serif`;
  const step = span > 4 * 3600 ? 3600 : span > 3600 ? 1800 : 600;
  for (let t = 0; t <= span; t += step) {
    const label = t >= 3600 && t % 3600 === 0 ? `${t / 3600} h` : `${Math.round(t / 60)} min`;
    g.fillText(label, Math.min(w - g.measureText(label).width, t / span * w), h - 4 * ratio);
  }
  const scale = `highest bar: ${top} per ${bin / 60} min`;
  g.fillText(scale, w - g.measureText(scale).width - 4 * ratio, 12 * ratio);
}

// --- wiring ----------------------------------------------------------------------------------

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.token.value = sessionStorage.getItem(TOKEN_KEY) || "";
ui.token.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, ui.token.value.trim()));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && recording()) keepAwake();
});
window.addEventListener("beforeunload", (e) => { if (recording()) e.preventDefault(); });
window.addEventListener("resize", () => { if (live) drawTimeline(); });

// For tests: drop the connection as a flaky network would, staying offline for `ms`.
window.respiraLive = {
  drop(ms) {
    live.offlineUntil = Date.now() + (ms || 0);
    live.socket.close();
  },
  state: () => live && { id: live.id, nextSeq: live.nextSeq, waiting: live.outbox.length, events: live.events.length,
    seconds: live.seconds, ended: live.ended, sampleRate: live.sampleRate },
};
