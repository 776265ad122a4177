// The collect page: draw a digit with Pointer Events, save it through the API, show what the
// model read, and keep a progress view of the member's saved digits. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const PEN_WIDTH = 18; // canvas pixels on a 280-pixel box: a felt-tip pen
const INK = "#111";
const PAPER = "#fff";
const NAME_RE = /^(\d)-(\d+)-(\d+)\.png$/i; // the loader's <digit>-<group>-<member>.png

let strokes = []; // each stroke: [[x, y], ...] in canvas pixels
let current = null; // the stroke being drawn
let target = 0; // the digit asked for
let saved = new Map(); // digit -> file name, for the current group and member
let liveTimer = null;
let liveSeq = 0;
// Class mode: the class code (asked once, kept for this tab) and each member's token (kept in
// this browser, so that a reload can still save and replace that member's digits).
const CODE_KEY = "mnistgap-class-code";
let classCode = sessionStorage.getItem(CODE_KEY);
const tokenKey = (w) => `mnistgap-member-token:${w.group}:${w.member}`;

// ---------------------------------------------------------------- drawing
function redraw() {
  ctx.fillStyle = PAPER; // an opaque background: the PNG is ink on white paper
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = INK;
  ctx.fillStyle = INK;
  ctx.lineWidth = PEN_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) {
    if (s.length === 1) {
      ctx.beginPath();
      ctx.arc(s[0][0], s[0][1], PEN_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
    ctx.stroke();
  }
}

function point(ev) {
  const r = pad.getBoundingClientRect();
  return [
    ((ev.clientX - r.left) * pad.width) / r.width,
    ((ev.clientY - r.top) * pad.height) / r.height,
  ];
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.pointerType === "mouse" && ev.button !== 0) return;
  ev.preventDefault();
  pad.setPointerCapture(ev.pointerId);
  current = [point(ev)];
  strokes.push(current);
  redraw();
});

pad.addEventListener("pointermove", (ev) => {
  if (!current) return;
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
  for (const e of events.length ? events : [ev]) current.push(point(e));
  redraw();
  scheduleLive(600);
});

function endStroke() {
  if (!current) return;
  current = null;
  updateButtons();
  scheduleLive(250);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function clearPad() {
  strokes = [];
  current = null;
  redraw();
  updateButtons();
  scheduleLive(0);
}

$("clear").addEventListener("click", clearPad);
$("undo").addEventListener("click", () => {
  strokes.pop();
  redraw();
  updateButtons();
  scheduleLive(0);
});
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "z" && !(ev.target instanceof HTMLInputElement)) {
    ev.preventDefault();
    $("undo").click();
  }
});

const canvasBlob = () => new Promise((resolve) => pad.toBlob(resolve, "image/png"));

// ---------------------------------------------------------------- API helpers
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (classCode) headers.set("X-Class-Code", classCode);
  let resp;
  try {
    resp = await fetch(path, { ...options, headers });
  } catch (err) {
    return {
      ok: false,
      status: 0,
      body: { error: "cannot reach the server (is it still running?)" },
    };
  }
  let body;
  try {
    body = await resp.json();
  } catch (err) {
    body = { error: `unexpected answer (HTTP ${resp.status})` };
  }
  if (resp.status === 401 && body.class_code_required) askForCode(body.error);
  return { ok: resp.ok, status: resp.status, body };
}

// 0.9995 shows as 99.9%, not a rounded-up 100.0%; only a reading of exactly 1 is 100%.
const percent = (c) =>
  c >= 0.995 && c < 1 ? `${(Math.floor(c * 1000) / 10).toFixed(1)}%` : `${Math.round(100 * c)}%`;

function who() {
  const g = $("group").value.trim();
  const m = $("member").value.trim();
  const valid = (v) => /^[0-9]{1,9}$/.test(v) && Number(v) >= 1;
  return valid(g) && valid(m) ? { group: String(Number(g)), member: String(Number(m)) } : null;
}

// ---------------------------------------------------------------- live reading
function scheduleLive(delay) {
  clearTimeout(liveTimer);
  liveTimer = setTimeout(liveReading, delay);
}

async function liveReading() {
  const seq = ++liveSeq;
  const live = $("live");
  if (!strokes.length) {
    live.textContent = "Model reads: –";
    return;
  }
  const form = new FormData();
  form.append("image", await canvasBlob(), "drawing.png");
  const r = await api("/api/predict", { method: "POST", body: form });
  if (seq !== liveSeq) return; // a newer drawing is on its way
  if (!r.ok) live.textContent = `Not readable yet: ${r.body.error}`;
  else if (r.body.prediction === null) live.textContent = `Model reads: – (${r.body.note})`;
  else live.textContent = `Model reads: ${r.body.prediction} (${percent(r.body.confidence)} sure)`;
}

// ---------------------------------------------------------------- progress and target
function setTarget(d) {
  target = d;
  $("target").textContent = String(d);
  $("save").textContent = `Save digit ${d}`;
  renderProgress();
  updateButtons();
}

function nextUnsaved(from) {
  for (let i = 1; i <= 10; i++) {
    const d = (from + i) % 10;
    if (!saved.has(d)) return d;
  }
  return null;
}

function renderProgress() {
  const list = $("progress");
  list.replaceChildren();
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = saved.has(d) ? "done" : "";
    b.setAttribute("aria-pressed", String(d === target));
    const state = saved.has(d) ? "saved" : "to do";
    b.append(el("span", String(d), { class: "digit" }), el("span", state, { class: "state" }));
    b.title = saved.has(d) ? `saved as ${saved.get(d)}` : `digit ${d}: not saved yet`;
    b.addEventListener("click", () => setTarget(d));
    li.append(b);
    list.append(li);
  }
  const summary = $("progress-summary");
  const w = who();
  const whom = w ? `Group ${w.group}, member ${w.member}` : "";
  if (!w) summary.textContent = "Enter the group and member numbers first.";
  else if (saved.size === 10) summary.textContent = `${whom}: all ten digits saved. Thank you!`;
  else summary.textContent = `${whom}: ${saved.size} of 10 saved. Choose a digit to draw it again.`;
}

async function refreshProgress() {
  const w = who();
  saved = new Map();
  if (w) {
    const r = await api(`/api/digits?group=${w.group}&member=${w.member}`);
    if (r.ok) for (const row of r.body.digits) saved.set(row.digit, row.file);
  }
  renderProgress();
  updateButtons();
}

function updateButtons() {
  $("save").disabled = !who() || strokes.length === 0;
  $("undo").disabled = strokes.length === 0;
  $("clear").disabled = strokes.length === 0;
}

for (const id of ["group", "member"]) {
  $(id).addEventListener("input", () => {
    $(id).setAttribute(
      "aria-invalid",
      String($(id).value !== "" && !/^[0-9]+$/.test($(id).value.trim())),
    );
    clearTimeout(refreshProgress.timer);
    refreshProgress.timer = setTimeout(async () => {
      await refreshProgress();
      if (saved.has(target)) {
        const d = nextUnsaved(target);
        if (d !== null) setTarget(d);
      }
    }, 250);
  });
}

// ---------------------------------------------------------------- saving
function showResult(kind, parts) {
  const el = $("result");
  el.className = `result ${kind}`;
  el.replaceChildren(...parts);
}

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

async function postDigit(blob, filename, digit, w) {
  const form = new FormData();
  form.append("digit", String(digit));
  form.append("group", w.group);
  form.append("member", w.member);
  form.append("replace", $("replace").checked ? "true" : "false");
  form.append("image", blob, filename);
  const token = localStorage.getItem(tokenKey(w));
  const r = await api("/api/digits", {
    method: "POST",
    body: form,
    headers: token ? { "X-Member-Token": token } : {},
  });
  if (r.ok && r.body.member_token) localStorage.setItem(tokenKey(w), r.body.member_token);
  return r;
}

function readingText(body) {
  return body.prediction === null ? ` (no model reading: ${body.note})` : "";
}

$("save").addEventListener("click", async () => {
  const w = who();
  if (!w) return showResult("error", ["Enter the group and member numbers first."]);
  if (!strokes.length) return showResult("error", ["Draw the digit first."]);
  $("save").disabled = true;
  const digit = target;
  const r = await postDigit(await canvasBlob(), "drawing.png", digit, w);
  if (r.ok) {
    const b = r.body;
    const parts = [b.replaced ? "Replaced " : "Saved ", el("code", b.file), "."];
    if (b.prediction !== null) {
      parts.push(" The model read ", el("strong", String(b.prediction), { id: "read-digit" }));
      parts.push(` (${percent(b.confidence)} sure)`);
      parts.push(
        b.prediction === digit
          ? "."
          : ` — not a ${digit}. If that was a slip, redraw it and save with “Replace” ticked.`,
      );
    } else parts.push(readingText(b));
    showResult(b.prediction === null || b.prediction === digit ? "ok" : "warn", parts);
    $("replace").checked = false;
    clearPad();
    await refreshProgress();
    const d = saved.has(digit) ? nextUnsaved(digit) : digit;
    setTarget(d === null ? digit : d);
  } else if (r.status === 409) {
    const file = r.body.file || `digit ${digit}`;
    showResult("warn", [
      "Not saved: ",
      el("code", file),
      " is already saved. Tick “Replace a digit already saved” to overwrite it.",
    ]);
  } else {
    showResult("error", [`Not saved: ${r.body.error}`]);
  }
  updateButtons();
});

// ---------------------------------------------------------------- uploads
async function uploadFiles(files) {
  const list = $("uploads");
  for (const file of files) {
    const m = NAME_RE.exec(file.name);
    const w = m ? { group: String(Number(m[2])), member: String(Number(m[3])) } : who();
    const digit = m ? Number(m[1]) : target;
    const li = document.createElement("li");
    list.prepend(li);
    if (!w) {
      li.className = "error";
      li.textContent = `${file.name}: not saved: enter the group and member numbers first`;
      continue;
    }
    li.textContent = `${file.name}: uploading…`;
    const r = await postDigit(file, file.name, digit, w);
    if (r.ok) {
      li.className = "ok";
      li.textContent =
        `${file.name}: saved as ${r.body.file}` +
        (r.body.prediction === null
          ? ""
          : `, the model read ${r.body.prediction} (${percent(r.body.confidence)})`);
    } else {
      li.className = r.status === 409 ? "warn" : "error";
      li.textContent = `${file.name}: not saved: ${r.body.error}`;
    }
  }
  await refreshProgress();
}

$("files").addEventListener("change", async (ev) => {
  await uploadFiles([...ev.target.files]);
  ev.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  await uploadFiles([...ev.dataTransfer.files]);
});

// ---------------------------------------------------------------- class code
function askForCode(message) {
  classCode = null;
  sessionStorage.removeItem(CODE_KEY);
  $("join").hidden = false;
  $("join-error").textContent = message || "";
  $("model-status").textContent = "Enter the class code your teacher gave you.";
  $("class-code").focus();
}

$("join").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const typed = $("class-code").value.trim();
  if (!typed) return;
  classCode = typed;
  sessionStorage.setItem(CODE_KEY, typed);
  $("join").hidden = true;
  $("join-error").textContent = "";
  await start();
});

// ---------------------------------------------------------------- start
async function start() {
  const r = await api("/api/info");
  const status = $("model-status");
  if (r.status === 401) return; // askForCode() has asked
  if (!r.ok) status.textContent = "The server does not answer.";
  else if (r.body.model)
    status.textContent = `Model: ${r.body.model} · preprocessing “${r.body.preprocess}”`;
  else status.textContent = `No model reading: ${r.body.note}`;
  await refreshProgress();
}

redraw();
setTarget(0);
start();
