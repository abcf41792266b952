// The draw-and-guess page: records strokes with pointer events, posts them to the demo server as raw ink,
// shows the serving signature's top guesses and what the model sees. No dependencies: it works offline.
"use strict";

const UNITS = 256;          // Drawing coordinates span 0-256 across the canvas (QuickDraw's simplified frame).
const THROTTLE_MS = 250;    // While drawing, at most one guess request per this many milliseconds.
const SHOWN = new Set(["probabilities", "top_k_classes", "top_k_probabilities"]);

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const state = {
  strokes: [],       // Finished strokes, each [xs, ys] in drawing units.
  current: null,     // The stroke being drawn, or null.
  pointer: null,     // Its pointerId.
  changes: 0,        // Bumped by every change of the drawing.
  guessesFor: 0,     // The change whose guesses are shown.
  viewFor: 0,        // The change whose view is shown.
  viewKind: null,    // What /view shows for this model (null: nothing).
  timer: null,       // A throttled guess request waiting to go.
  lastSent: 0,
  guess: null,       // The top guess shown.
};

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// The page is settled when what it shows belongs to the drawing on the canvas (the browser test waits for it).
function updateSettled() {
  const settled = state.current === null && state.timer === null && state.guessesFor === state.changes &&
      (state.viewKind === null || state.viewFor === state.changes);
  document.body.dataset.settled = String(settled);
}

function drawing() {
  return state.current ? state.strokes.concat([state.current]) : state.strokes.slice();
}

function pointCount(strokes) {
  return strokes.reduce((n, s) => n + s[0].length, 0);
}

async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function showGuesses(outputs) {
  const list = document.getElementById("guesses");
  list.replaceChildren();
  const classes = outputs ? outputs.top_k_classes : [];
  classes.forEach((name, i) => {
    const probability = outputs.top_k_probabilities[i];
    const item = document.createElement("li");
    item.dataset.class = name;
    item.dataset.probability = String(probability);
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(probability * 200)}px`;
    item.append(label, ` ${(probability * 100).toFixed(1)}%`, bar);
    list.append(item);
  });
  state.guess = classes.length ? classes[0] : null;
  // Outputs beyond the guesses (e.g. a "valid" flag) are shown as they come.
  const extra = outputs ? Object.keys(outputs).filter(k => !SHOWN.has(k)).sort() : [];
  document.getElementById("extra").textContent = extra.map(k => `${k}: ${JSON.stringify(outputs[k])}`).join("; ");
  if (outputs && outputs.valid === false) setStatus("Not enough ink for a guess yet.");
}

function showView(answer) {
  const image = document.getElementById("view");
  image.hidden = !answer;
  if (answer) image.src = `data:image/png;base64,${answer.png}`;
  // Stroke pictures carry their title; the input image gets it as a caption.
  document.getElementById("view-title").textContent = answer && answer.kind === "image" ? answer.title : "";
}

async function requestGuesses() {
  const version = state.changes;
  const strokes = drawing();
  state.lastSent = performance.now();
  if (pointCount(strokes) < 2) {
    showGuesses(null);
    state.guessesFor = version;
    return updateSettled();
  }
  try {
    const outputs = await post("/predict", {drawing: strokes});
    if (version < state.guessesFor) return;  // A newer answer is already shown.
    setStatus("");
    showGuesses(outputs);
  } catch (error) {
    if (version < state.guessesFor) return;
    setStatus(`No guess: ${error.message}`, true);
  }
  state.guessesFor = version;
  updateSettled();
}

async function requestView() {
  if (state.viewKind === null) return;
  const version = state.changes;
  const strokes = drawing();
  let answer = null;
  if (pointCount(strokes) >= 2) {
    try {
      answer = await post("/view", {drawing: strokes});
    } catch (error) {
      document.getElementById("view-title").textContent = `No view: ${error.message}`;
    }
  }
  if (version < state.viewFor) return;
  if (answer || pointCount(strokes) < 2) showView(answer);
  state.viewFor = version;
  updateSettled();
}

// After a finished stroke, undo or clear: everything, now.
function refresh() {
  clearTimeout(state.timer);
  state.timer = null;
  updateSettled();
  requestGuesses();
  requestView();
}

// While drawing: guesses only, at most every THROTTLE_MS.
function guessSoon() {
  if (state.timer !== null) return;
  const wait = Math.max(0, state.lastSent + THROTTLE_MS - performance.now());
  state.timer = setTimeout(() => { state.timer = null; requestGuesses(); }, wait);
  updateSettled();
}

function redraw() {
  context.clearRect(0, 0, canvas.width, canvas.height);
  drawing().forEach(([xs, ys]) => {
    context.beginPath();
    context.moveTo(xs[0] * canvas.width / UNITS, ys[0] * canvas.height / UNITS);
    // A one-point stroke (a dot) still shows.
    for (let i = xs.length > 1 ? 1 : 0; i < xs.length; i++) {
      context.lineTo(xs[i] * canvas.width / UNITS + (xs.length > 1 ? 0 : 0.5), ys[i] * canvas.height / UNITS);
    }
    context.stroke();
  });
}

function toUnits(event) {
  const box = canvas.getBoundingClientRect();
  const round = v => Math.round(v * 100) / 100;
  return [round((event.clientX - box.left) * UNITS / box.width),
          round((event.clientY - box.top) * UNITS / box.height)];
}

function addPoint(event) {
  const [x, y] = toUnits(event);
  const [xs, ys] = state.current;
  if (xs.length && xs[xs.length - 1] === x && ys[ys.length - 1] === y) return false;
  xs.push(x);
  ys.push(y);
  state.changes++;
  return true;
}

canvas.addEventListener("pointerdown", event => {
  if (state.current !== null) return;  // One stroke at a time (a second finger is ignored).
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  state.pointer = event.pointerId;
  state.current = [[], []];
  addPoint(event);
  redraw();
  guessSoon();
});

canvas.addEventListener("pointermove", event => {
  if (state.current === null || event.pointerId !== state.pointer) return;
  // Every sample since the last event, not just the last one: fast strokes keep their shape.
  const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  let added = false;
  for (const sample of samples.length ? samples : [event]) added = addPoint(sample) || added;
  if (added) {
    redraw();
    guessSoon();
  }
});

function endStroke(event) {
  if (state.current === null || event.pointerId !== state.pointer) return;
  state.strokes.push(state.current);
  state.current = null;
  state.changes++;
  refresh();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

document.getElementById("undo").addEventListener("click", () => {
  if (!state.strokes.length) return;
  state.strokes.pop();
  state.changes++;
  redraw();
  refresh();
});

document.getElementById("clear").addEventListener("click", () => {
  state.strokes = [];
  state.changes++;
  redraw();
  refresh();
});

document.getElementById("save").addEventListener("click", async () => {
  if (pointCount(state.strokes) < 2) return setStatus("Draw something first.", true);
  try {
    const word = document.getElementById("word").value.trim();
    const answer = await post("/ndjson", {drawing: state.strokes, word, guess: state.guess});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([answer.ndjson + "\n"], {type: "application/x-ndjson"}));
    link.download = `${word || state.guess || "drawing"}.ndjson`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 0);  // After the download has started.
  } catch (error) {
    setStatus(`Not saved: ${error.message}`, true);
  }
});

async function start() {
  context.lineWidth = 6;
  context.lineCap = context.lineJoin = "round";
  context.strokeStyle = "#222";
  try {
    const info = await (await fetch("/info")).json();
    state.viewKind = info.view;
    document.getElementById("model").textContent =
        `${info.model || "model"}: ${info.classes.length} classes (${info.classes.slice(0, 8).join(", ")}` +
        `${info.classes.length > 8 ? ", …" : ""})`;
    document.getElementById("classes").replaceChildren(...info.classes.map(name => {
      const option = document.createElement("option");
      option.value = name;
      return option;
    }));
    if (info.view === null) {
      document.getElementById("view-title").textContent =
          "Start the demo with --model_dir to see what the model sees.";
    }
  } catch (error) {
    setStatus(`The server does not answer: ${error.message}`, true);
  }
  document.body.dataset.ready = "true";
  updateSettled();
}

start();
