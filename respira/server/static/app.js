// respira page: record or choose audio, send it to the API, show what the model says.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const CLIP_MAX_S = 60;          // a recording stops by itself after this long ...
const LONG_MAX_S = 3600;        // ... or this long with "long recording" ticked
const LONG_FILE_S = 60;         // files longer than this go to /detect
const TOKEN_KEY = "respira-token";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), modelInfo: $("model-info"), record: $("record"), stop: $("stop"), level: $("level"),
  file: $("file"), long: $("long"), token: $("token"), tokenBox: $("token-box"), status: $("status"),
  error: $("error"), playback: $("playback"), result: $("result"), label: $("label"), score: $("score"),
  diagnosis: $("diagnosis"), probabilities: $("probabilities"), waveform: $("waveform"), mfcc: $("mfcc"),
  mel: $("mel"), detection: $("detection"), perHour: $("coughs-per-hour"), detectSummary: $("detect-summary"),
  timeline: $("timeline"), events: document.querySelector("#events tbody"),
};

let models = [];
let recording = null;  // {recorder, stream, chunks, started, timer, meter}

// --- messages --------------------------------------------------------------------------

function setStatus(text) { ui.status.textContent = text; }

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

function setBusy(busy) {
  ui.record.disabled = busy || recording !== null;
  ui.file.disabled = busy;
  ui.model.disabled = busy;
}

// --- the API ---------------------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = ui.token.value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  } catch (e) {
    throw new Error("Cannot reach the server (" + e.message + ").");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    if (response.status === 401) ui.tokenBox.open = true;
    const reason = body && body.error ? body.error : response.status + " " + response.statusText;
    throw new Error(reason.charAt(0).toUpperCase() + reason.slice(1) + ".");
  }
  return body;
}

async function loadModels() {
  clearError();
  setStatus("Loading models…");
  try {
    models = await api("/api/v1/models");
  } catch (e) {
    models = [];
    ui.model.replaceChildren();
    setStatus("No models loaded.");
    showError(e.message);
    return;
  }
  const previous = ui.model.value;
  ui.model.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  if (models.some((m) => m.name === previous)) ui.model.value = previous;
  describeModel();
  setStatus("Ready: record a sound or choose a file.");
}

function selectedModel() { return models.find((m) => m.name === ui.model.value); }

function describeModel() {
  const m = selectedModel();
  if (!m) { ui.modelInfo.textContent = ""; return; }
  const task = m.positive ? "screens for " + m.positive : m.task + ": " + m.classes.join(", ");
  ui.modelInfo.textContent = task + " · " + m.clip_seconds + " s windows at " + m.sample_rate / 1000 + " kHz";
}

async function analyse(blob, long) {
  clearError();
  setBusy(true);
  const endpoint = long ? "detect" : "predict";
  setStatus(long ? "Counting coughs… (a long recording takes a while)" : "Analysing…");
  const query = new URLSearchParams({ images: "true" });
  if (ui.model.value) query.set("model", ui.model.value);
  try {
    const answer = await api("/api/v1/" + endpoint + "?" + query, {
      method: "POST",
      body: blob,
      headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    if (long) showDetection(answer); else showPrediction(answer);
    const notes = answer.warnings ? " Note: the audio is " + answer.warnings.join(", ") + "." : "";
    setStatus("Done (" + answer.duration_s.toFixed(1) + " s of audio)." + notes);
  } catch (e) {
    setStatus("Not analysed.");
    showError(e.message);
  } finally {
    setBusy(false);
  }
}

// --- results ---------------------------------------------------------------------------

function showImage(img, url) {
  img.hidden = !url;
  if (url) img.src = url; else img.removeAttribute("src");
}

function showPrediction(p) {
  ui.detection.hidden = true;
  ui.result.hidden = false;
  if (p.label !== undefined) {
    ui.label.textContent = p.label;
    const model = models.find((m) => m.name === p.model);
    const of = model && model.positive ? "probability of " + model.positive : "probability";
    ui.score.textContent = "score " + p.score.toFixed(2) + " (" + of + ")";
  } else if (p.labels !== undefined) {
    ui.label.textContent = p.labels.length ? p.labels.join(", ") : "nothing over its threshold";
    ui.score.textContent = "";
  } else {
    ui.label.textContent = p.value.toFixed(3);
    ui.score.textContent = "predicted value";
  }
  ui.diagnosis.hidden = p.diagnosis === undefined;
  ui.diagnosis.textContent = p.diagnosis === undefined ? "" : "Screening result: " + p.diagnosis;
  ui.diagnosis.classList.toggle("positive", p.diagnosis !== undefined && !p.diagnosis.startsWith("not "));
  showBars(p.probabilities || {}, p.label);
  const images = p.images || {};
  showImage(ui.waveform, images.waveform);
  showImage(ui.mfcc, images.mfcc);
  showImage(ui.mel, images.mel);
}

function showBars(probabilities, label) {
  const rows = Object.entries(probabilities).sort((a, b) => b[1] - a[1]).map(([name, p]) => {
    const row = document.createElement("div");
    row.className = "bar" + (name === label ? " chosen" : "");
    row.dataset.class = name;
    row.dataset.probability = String(p);
    const text = document.createElement("span");
    text.className = "bar-name";
    text.textContent = name;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = (100 * p).toFixed(1) + "%";
    row.append(text, track, value);
    return row;
  });
  ui.probabilities.replaceChildren(...rows);
}

function showDetection(d) {
  ui.result.hidden = true;
  ui.detection.hidden = false;
  const s = d.summary;
  ui.perHour.textContent = s.coughs_per_hour.toFixed(1);
  ui.detectSummary.textContent = s.coughs + " coughs in " + s.bouts + " bouts over " +
    (s.hours_analysed * 60).toFixed(1) + " min (threshold " + d.threshold + ")";
  showImage(ui.timeline, (d.images || {}).timeline);
  ui.events.replaceChildren(...d.events.map((e) => {
    const tr = document.createElement("tr");
    for (const v of [e.start.toFixed(2), e.end.toFixed(2), e.label, e.score.toFixed(2)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
}

// --- recording -------------------------------------------------------------------------

function recorderType() {
  for (const type of ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"]) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

function startMeter(stream) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame = 0;
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const db = 10 * Math.log10(sum / samples.length + 1e-10);  // dBFS of the last ~20 ms
    ui.level.style.width = Math.max(0, Math.min(100, (db + 60) / 60 * 100)) + "%";
    frame = requestAnimationFrame(draw);
  };
  draw();
  return () => { cancelAnimationFrame(frame); context.close(); ui.level.style.width = "0"; };
}

async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    showError("This browser cannot record here (the microphone needs https or localhost). Choose a file instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (e) {
    showError("No microphone: " + e.message + ". Allow the microphone, or choose a file instead.");
    return;
  }
  const type = recorderType();
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const long = ui.long.checked;
  const limit = long ? LONG_MAX_S : CLIP_MAX_S;
  recording = { recorder, stream, chunks: [], started: performance.now(), long, timer: 0, meter: null };
  recorder.ondataavailable = (event) => { if (event.data.size) recording.chunks.push(event.data); };
  recorder.onstop = finishRecording;
  recorder.start(1000);
  recording.meter = startMeter(stream);
  recording.timer = setInterval(() => {
    const seconds = (performance.now() - recording.started) / 1000;
    setStatus("Recording… " + seconds.toFixed(1) + " s (stops at " + limit + " s)");
    if (seconds >= limit) stopRecording();
  }, 100);
  ui.record.disabled = true;
  ui.stop.disabled = false;
  ui.record.classList.add("recording");
  setStatus("Recording…");
}

function stopRecording() {
  if (recording && recording.recorder.state !== "inactive") recording.recorder.stop();
}

function finishRecording() {
  const r = recording;
  recording = null;
  clearInterval(r.timer);
  r.meter();
  r.stream.getTracks().forEach((t) => t.stop());
  ui.stop.disabled = true;
  ui.record.classList.remove("recording");
  const blob = new Blob(r.chunks, { type: r.recorder.mimeType || "audio/webm" });
  if (!blob.size) {
    setBusy(false);
    showError("Nothing was recorded.");
    return;
  }
  ui.playback.src = URL.createObjectURL(blob);
  ui.playback.hidden = false;
  analyse(blob, r.long);
}

// --- files -----------------------------------------------------------------------------

function fileDuration(file) {
  // Seconds from the browser's own decoder, or NaN when it cannot tell (then the file counts as short).
  return new Promise((resolve) => {
    const audio = new Audio();
    const url = URL.createObjectURL(file);
    const done = (seconds) => { URL.revokeObjectURL(url); resolve(seconds); };
    const timer = setTimeout(() => done(NaN), 3000);
    audio.preload = "metadata";
    audio.onloadedmetadata = () => { clearTimeout(timer); done(audio.duration); };
    audio.onerror = () => { clearTimeout(timer); done(NaN); };
    audio.src = url;
  });
}

async function chooseFile() {
  const file = ui.file.files[0];
  if (!file) return;
  clearError();
  const seconds = await fileDuration(file);
  const long = ui.long.checked || (Number.isFinite(seconds) && seconds > LONG_FILE_S);
  ui.playback.src = URL.createObjectURL(file);
  ui.playback.hidden = false;
  await analyse(file, long);
  ui.file.value = "";  // choosing the same file again analyses it again
}

// --- start -----------------------------------------------------------------------------

ui.record.addEventListener("click", startRecording);
ui.stop.addEventListener("click", stopRecording);
ui.file.addEventListener("change", chooseFile);
ui.model.addEventListener("change", describeModel);
ui.token.value = sessionStorage.getItem(TOKEN_KEY) || "";
ui.token.addEventListener("change", () => {
  sessionStorage.setItem(TOKEN_KEY, ui.token.value.trim());
  loadModels();
});
loadModels();
