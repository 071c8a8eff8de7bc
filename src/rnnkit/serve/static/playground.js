// rnnkit playground: one tab per model the server holds (GET /models), each a small form over
// the server's JSON routes. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

// Every POST the page sends, as {path, body}, newest last (the browser tests read it).
window.rnnkitRequests = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function describe(detail, status) {
  if (Array.isArray(detail)) {
    return detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `${status}: ${detail}`;
}

async function api(path, body) {
  let init = {};
  if (body !== undefined) {
    window.rnnkitRequests.push({ path, body });
    init = { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  }
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(describe(data.detail, response.status));
  return data;
}

// POSTs `body` to a streamed route (text/plain) and calls `onText` with each piece of text as it
// arrives; a 4xx comes before the stream, as JSON. Returns the response (for its headers).
async function stream(path, body, onText) {
  window.rnnkitRequests.push({ path, body });
  const response = await fetch(path, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(describe((await response.json()).detail, response.status));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();  // {stream: true} keeps a character split across chunks
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  onText(decoder.decode());
  return response;
}

// Runs `work` on a button press: the button is disabled meanwhile, errors go to the status line.
function wire(button, status, work) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.className = "status";
    status.textContent = "…";
    try {
      status.textContent = (await work()) || "";
    } catch (e) {
      status.className = "status error";
      status.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}

function slider(label, attrs, show) {
  const input = el("input", { type: "range", ...attrs });
  const value = el("output", { text: show(input.value) });
  input.addEventListener("input", () => { value.textContent = show(input.value); });
  return [input, el("label", {}, `${label} `, input, " ", value)];
}

const route = (model, op) => `models/${encodeURIComponent(model.name)}/${op}`;

// ---- language models: sample, streamed -----------------------------------------------------------
function languageModelPanel(model, panel) {
  const prime = el("textarea", { rows: 2, class: "prime", placeholder: "prime (empty: a line start)" });
  const [temperature, tLabel] = slider("temperature", { class: "temperature", min: 0.1, max: 2, step: 0.05, value: 1 },
    (v) => Number(v).toFixed(2));
  const [topK, kLabel] = slider("top-k", { class: "top-k", min: 0, max: 100, step: 1, value: 0 },
    (v) => (Number(v) === 0 ? "off" : v));
  const length = el("input", { type: "number", class: "length", min: 1, max: 2000, value: 200 });
  const seed = el("input", { type: "number", class: "seed", min: 0, placeholder: "random" });
  const go = el("button", { class: "go sample", text: "Sample" });
  const output = el("textarea", { rows: 10, class: "output", readonly: "" });
  const status = el("div", { class: "status" });
  panel.append(
    el("label", { text: "Prime" }), prime,
    el("div", { class: "row" }, tLabel, kLabel, el("label", {}, "length ", length),
      el("label", {}, "seed ", seed), go),
    output, status,
  );
  wire(go, status, async () => {
    const body = { prime: prime.value, length: Number(length.value), temperature: Number(temperature.value) };
    if (Number(topK.value) > 0) body.top_k = Number(topK.value);
    if (seed.value !== "") body.seed = Number(seed.value);
    output.value = "";
    const response = await stream(route(model, "sample/stream"), body, (text) => {
      output.value += text;
      output.scrollTop = output.scrollHeight;
    });
    return `seed ${response.headers.get("x-rnnkit-seed")}`;
  });
}

// ---- sequence to sequence: output and attention map ------------------------------------------
function drawAttention(canvas, weights, source, output) {
  const shown = (t) => (t === " " ? "␣" : t);
  const cell = Math.max(10, Math.min(26, Math.floor(520 / Math.max(source.length, output.length))));
  const ctx = canvas.getContext("2d");
  ctx.font = "12px monospace";
  const left = 12 + Math.max(...output.map((t) => ctx.measureText(shown(t)).width));
  const top = 12 + Math.max(...source.map((t) => ctx.measureText(shown(t)).width));
  canvas.width = left + cell * source.length + 4;
  canvas.height = top + cell * output.length + 4;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  weights.forEach((row, i) => row.forEach((w, j) => {
    const shade = Math.round(255 * (1 - w));
    ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
    ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
  }));
  ctx.font = "12px monospace";
  ctx.fillStyle = "#222";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  output.forEach((t, i) => ctx.fillText(shown(t), left - 6, top + (i + 0.5) * cell));
  source.forEach((t, j) => {  // column labels, written upwards
    ctx.save();
    ctx.translate(left + (j + 0.5) * cell, top - 6);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(shown(t), 0, 0);
    ctx.restore();
  });
}

function predictForm(model, panel, show) {
  const input = el("input", { type: "text", class: "input", placeholder: "input" });
  const go = el("button", { class: "go predict", text: "Predict" });
  const status = el("div", { class: "status" });
  panel.append(el("div", { class: "row" }, el("label", { text: "Input" }), go), input, status);
  const run = async () => show(await api(route(model, "predict"), { input: input.value }));
  wire(go, status, run);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") go.click(); });
}

function seq2seqPanel(model, panel) {
  const output = el("input", { type: "text", class: "output", readonly: "" });
  const canvas = el("canvas", { class: "attention", width: 0, height: 0 });
  predictForm(model, panel, (answer) => {
    output.value = answer.output;
    if (!answer.attention) return "this run has no attention";
    drawAttention(canvas, answer.attention, answer.source_tokens, answer.output_tokens);
    return "attention: rows are output tokens, columns source tokens (darker: more weight)";
  });
  panel.append(el("label", { text: "Output" }), output, canvas);
}

function taggerOrClassifierPanel(model, panel) {
  const result = el("div", { class: "result" });
  predictForm(model, panel, (answer) => {
    result.replaceChildren();
    if (answer.tags) {
      result.append(el("table", { class: "tags" },
        el("tr", {}, ...answer.tokens.map((t) => el("td", { text: t }))),
        el("tr", {}, ...answer.tags.map((t) => el("td", { text: t })))));
    } else {
      result.append(el("p", { text: `label: ${answer.label}` }));
      for (const [label, p] of Object.entries(answer.probabilities)) {
        result.append(el("div", { class: "bar" }, el("span", { text: label }),
          el("span", { class: "fill", style: `width: ${Math.round(200 * p)}px` }), p.toFixed(3)));
      }
    }
  });
  panel.append(result);
}

// ---- pictures and sounds: ocr, speech, caption ------------------------------------------------
function readDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// CTC columns: per output frame a bar as high as the likeliest label's probability (grey for
// the blank, blue for a label, written above it).
function drawColumns(canvas, columns) {
  const n = columns.labels.length, w = Math.max(3, Math.min(14, Math.floor(900 / n))), h = 80;
  canvas.width = n * w;
  canvas.height = h + 18;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px monospace";
  ctx.textAlign = "center";
  columns.labels.forEach((label, t) => {
    const p = columns.probability[t], blank = label === "<blank>";
    ctx.fillStyle = blank ? "#bbb" : "#4a7bd0";
    ctx.fillRect(t * w, 18 + h * (1 - p), w - 1, h * p);
    if (!blank) {
      ctx.fillStyle = "#222";
      ctx.fillText(label === " " ? "␣" : label, t * w + w / 2, 12);
    }
  });
}

// Caption attention: per output word, the picture with its weights over the 7x7 regions in red.
async function drawRegions(canvas, dataURL, attention, words) {
  const picture = new Image();
  await new Promise((resolve, reject) => { picture.onload = resolve; picture.onerror = reject; picture.src = dataURL; });
  const size = 84, gap = 8, side = Math.round(Math.sqrt(attention[0].length)), cell = size / side;
  const perRow = Math.min(words.length, 8);
  canvas.width = perRow * (size + gap);
  canvas.height = Math.ceil(words.length / perRow) * (size + 22);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "12px sans-serif";
  ctx.textAlign = "center";
  words.forEach((word, t) => {
    const x = (t % perRow) * (size + gap), y = Math.floor(t / perRow) * (size + 22);
    ctx.drawImage(picture, x, y, size, size);
    const top = Math.max(...attention[t]), low = Math.min(...attention[t]);
    attention[t].forEach((a, k) => {  // from none (the word's least weight) to red (its most)
      ctx.fillStyle = `rgba(230, 30, 30, ${(0.75 * (a - low) / (top - low + 1e-9)).toFixed(3)})`;
      ctx.fillRect(x + (k % side) * cell, y + Math.floor(k / side) * cell, cell, cell);
    });
    ctx.fillStyle = "#222";
    ctx.fillText(word, x + size / 2, y + size + 15);
  });
}

function mediaPanel(model, panel) {
  const field = model.kind === "speech" ? "audio" : "image";
  const what = field === "audio" ? "a WAV file" : model.kind === "captioner" ? "an 84x84 PNG scene" : "a PNG of one text line";
  const file = el("input", { type: "file", class: "file", accept: field === "audio" ? ".wav,audio/wav" : ".png,image/png" });
  const go = el("button", { class: "go predict", text: "Predict" });
  const status = el("div", { class: "status" });
  const output = el("input", { type: "text", class: "output", readonly: "" });
  const canvas = el("canvas", { class: "attention", width: 0, height: 0 });
  panel.append(el("div", { class: "row" }, el("label", {}, `${what} `, file), go), status,
    el("label", { text: "Output" }), output, canvas);
  wire(go, status, async () => {
    if (!file.files.length) throw new Error(`choose ${what}`);
    const dataURL = await readDataURL(file.files[0]);
    const answer = await api(route(model, "predict"), { [field]: dataURL.split(",")[1] });
    output.value = answer.output;
    if (answer.columns) {
      drawColumns(canvas, answer.columns);
      return "per output frame, the likeliest label's probability (grey: the blank)";
    }
    if (answer.attention) {
      await drawRegions(canvas, dataURL, answer.attention, answer.output_tokens);
      return "per word, its attention over the 7x7 regions of the picture (from clear: its least weight, to red: its most)";
    }
    return "";
  });
}

// ---- character models: hidden units ----------------------------------------------------------
function activationColour(v, scale) {
  const a = Math.min(1, Math.abs(v) / scale);
  return v >= 0 ? `rgba(214, 39, 40, ${a.toFixed(3)})` : `rgba(31, 119, 180, ${a.toFixed(3)})`;
}

function colourText(box, characters, values, scale) {
  box.replaceChildren(...characters.map((ch, i) => {
    const span = el("span", { title: values[i].toFixed(3), text: ch === "\n" ? "↵\n" : ch });
    span.style.backgroundColor = activationColour(values[i], scale);
    return span;
  }));
}

function unitsPanel(model, panel) {
  const text = el("textarea", { rows: 6, class: "units-text", placeholder: "a text in the model's alphabet" });
  const fill = el("button", { class: "go fill", text: "Fill with a sample" });
  const go = el("button", { class: "go show-units", text: "Show units" });
  const status = el("div", { class: "status" });
  const list = el("ol", { class: "units" });
  const box = el("div", { class: "coloured" });
  panel.append(
    el("p", { class: "note", text: "The hidden units most correlated with simple character features "
      + "(newline, space, vowel, capital, inside quotes or brackets, position in the line, …), "
      + "as rnnkit lab activations ranks them. Choose a unit to colour the text by its value: "
      + "red positive, blue negative." }),
    text, el("div", { class: "row" }, fill, go), status, list, box,
    el("div", { class: "legend", text: "hover a character for the unit's value after it" }),
  );
  wire(fill, status, async () => {
    const answer = await api(route(model, "sample"), { prime: "", length: 300, temperature: 0.8, seed: 0 });
    text.value = answer.text;
  });
  wire(go, status, async () => {
    const answer = await api(route(model, "activations"), { text: text.value });
    const scale = answer.state === "h" ? 1 : Math.max(1e-6, ...answer.units.flatMap((u) => u.activations.map(Math.abs)));
    const choose = (k) => {
      [...list.children].forEach((li, i) => li.classList.toggle("chosen", i === k));
      colourText(box, answer.characters, answer.units[k].activations, scale);
    };
    list.replaceChildren(...answer.units.map((u, k) => {
      const li = el("li", { text: `layer ${u.layer + 1} unit ${u.unit}: ${u.feature} (r = ${u.r >= 0 ? "+" : ""}${u.r.toFixed(2)})` });
      li.addEventListener("click", () => choose(k));
      return li;
    }));
    choose(0);
    return `${answer.layers} layer(s) × ${answer.hidden_size} units, state ${answer.state}`;
  });
}

// ---- tabs -----------------------------------------------------------------------------------
function select(id) {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", b.dataset.tab === id);
  for (const p of document.querySelectorAll("section.panel")) p.hidden = p.dataset.panel !== id;
}

function addTab(id, title, subtitle, build) {
  const button = el("button", { role: "tab", "data-tab": id, text: title });
  button.addEventListener("click", () => select(id));
  const panel = el("section", { class: "panel", "data-panel": id, hidden: "" });
  panel.append(el("p", { class: "note", text: subtitle }));
  build(panel);
  document.getElementById("tabs").append(button);
  document.getElementById("panels").append(panel);
}

async function start() {
  const panels = document.getElementById("panels");
  let models;
  try {
    models = await api("models");
  } catch (e) {
    panels.replaceChildren(el("p", { class: "status error", text: `GET /models failed: ${e.message}` }));
    return;
  }
  panels.replaceChildren();
  const builders = { "language model": languageModelPanel, seq2seq: seq2seqPanel,
    tagger: taggerOrClassifierPanel, classifier: taggerOrClassifierPanel,
    "line reader": mediaPanel, speech: mediaPanel, captioner: mediaPanel };
  for (const model of models) {
    const metric = Object.entries(model.metrics).filter(([k]) => k !== "step")
      .map(([k, v]) => `${k} ${typeof v === "number" ? Number(v.toPrecision(4)) : v}`).slice(0, 4).join(", ");
    const subtitle = `${model.task} (${model.kind})${metric ? ` · validation: ${metric}` : ""}`;
    const build = builders[model.kind] || ((m, panel) => panel.append(el("p", {
      text: `The page has no form for ${m.task} runs; use rnnkit predict.` })));
    addTab(model.name, model.name, subtitle, (panel) => build(model, panel));
    if (model.operations.includes("activations")) {
      addTab(`${model.name}/units`, `${model.name}: hidden units`, subtitle, (panel) => unitsPanel(model, panel));
    }
  }
  const first = document.querySelector("#tabs button");
  const wanted = decodeURIComponent(location.hash.slice(1));
  const known = [...document.querySelectorAll("#tabs button")].some((b) => b.dataset.tab === wanted);
  if (first) select(known ? wanted : first.dataset.tab);
  document.body.dataset.ready = "true";
}

start();
