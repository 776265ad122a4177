// The teacher view: the class's progress from /api/progress (X-Teacher-Key), refreshed every
// few seconds, and the students' page address as a QR code. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "mnistgap-teacher-key";
let key = sessionStorage.getItem(KEY);
let timer = null;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
}

function render(body) {
  $("page-url").textContent = body.url;
  $("page-url").href = body.url;
  $("qr").src = body.qr_svg;
  $("qr").hidden = false;
  const done = body.members.filter((m) => m.count === 10).length;
  $("summary").textContent =
    `${body.files} digits saved by ${body.members.length} members; ${done} have all ten.`;
  const tbody = $("members").querySelector("tbody");
  tbody.replaceChildren();
  for (const m of body.members) {
    const tr = document.createElement("tr");
    cell(tr, String(m.group));
    cell(tr, String(m.member));
    cell(tr, `${m.count} of 10`);
    const digits = [];
    for (let d = 0; d < 10; d++) digits.push(m.digits[String(d)] ? String(d) : "·");
    cell(tr, digits.join(" "));
    tbody.append(tr);
  }
  $("leakage-note").textContent =
    body.leakage_note || `${body.flagged.length} file(s) flagged as near-copies of MNIST.`;
  const list = $("flagged");
  list.replaceChildren();
  for (const f of body.flagged) {
    const li = document.createElement("li");
    li.textContent =
      `${f.file}: ${f.reason} (distance ${f.distance}, ratio ${f.ratio}, ` +
      `nearest MNIST label ${f.nearest_label})`;
    list.append(li);
  }
}

async function refresh() {
  clearTimeout(timer);
  if (!key) return;
  let resp;
  try {
    resp = await fetch("/api/progress", { headers: { "X-Teacher-Key": key } });
  } catch (err) {
    $("status").textContent = "Cannot reach the server (is it still running?)";
    timer = setTimeout(refresh, 5000);
    return;
  }
  const body = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
  if (resp.status === 401) {
    key = null;
    sessionStorage.removeItem(KEY);
    $("unlock").hidden = false;
    $("unlock-error").textContent = body.error;
    return;
  }
  if (!resp.ok) {
    $("status").textContent = `Not shown: ${body.error}`;
  } else {
    $("unlock").hidden = true;
    $("status").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    render(body);
  }
  timer = setTimeout(refresh, 5000);
}

$("unlock").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = $("teacher-key").value.trim();
  sessionStorage.setItem(KEY, key);
  $("unlock-error").textContent = "";
  refresh();
});

refresh();
