// taggram's web page: pick a file, POST it to v1/tag?taggram=true, draw the taggram.
// Plain ES module, no dependencies. Every URL is relative to the page's <base href>, which the
// server sets from its root path, so the page works under a path prefix behind a proxy.

const KEY_STORAGE = "taggram.apiKey";
// The model picked last, for this tab: a reload went back to the default model, and the next
// file was tagged with it unnoticed.
const MODEL_STORAGE = "taggram.model";

// Viridis (matplotlib), sampled at 10 even steps; perceptually uniform and monotonic in lightness.
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
];

const $ = (id) => document.getElementById(id);
const ui = {
  apiKey: $("api-key"), keyPanel: $("key-panel"),
  drop: $("drop"), file: $("file"), dropHint: $("drop-hint"),
  model: $("model"), rows: $("rows"), modelInfo: $("model-info"),
  error: $("error"), status: $("status"), statusText: $("status-text"), announcer: $("announcer"),
  result: $("result"), empty: $("empty"), summary: $("summary"), player: $("player"),
  playerNote: $("player-note"),
  canvas: $("taggram"), wrap: $("canvas-wrap"), cursor: $("cursor"), tooltip: $("tooltip"),
  rowMark: $("row-mark"), cellMark: $("cell-mark"),
  topTags: $("top-tags"),
};

const state = {
  models: new Map(), // name -> metadata from GET v1/models
  chosen: null, // the File picked last (tagged again when the model changes)
  file: null, // the File whose result is shown
  audioUrl: null, // its object URL, played by <audio>
  body: null, // the last successful v1/tag response
  layout: null, // geometry of the drawn heat-map (CSS pixels)
  cell: { row: 0, column: 0 }, // the heat-map's keyboard-focused cell
  inFlight: null, // AbortController of the running request
};

// ---------------------------------------------------------------- API

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

class ApiError extends Error {
  constructor(message, { status = 0, code = "", title = "" } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.title = title;
  }
}

// The readable message of an error body: RFC 9457 problem details (detail, title, code), this
// service's envelope {"error": {code, message}}, or a plain {message}; whichever is there.
async function apiError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const nested = body && typeof body.error === "object" && body.error ? body.error : {};
  let message = (body && (body.detail || body.message)) || nested.message || "";
  if (typeof message !== "string") message = JSON.stringify(message);
  const code = (body && body.code) || nested.code || "";
  const title = (body && body.title) || "";
  if (!message) message = `${response.status} ${response.statusText || "error"}`.trim();
  if (response.status === 401 || response.status === 403) {
    message += " — enter a valid API key (top right).";
  }
  const retry = response.headers.get("Retry-After");
  if (response.status === 429 && retry) message += ` Try again in ${retry} s.`;
  return new ApiError(message, { status: response.status, code, title });
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      ...options,
      headers: { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) },
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    // Offline, asking whether the service runs sent people to check a server that was fine.
    if (!navigator.onLine) throw new ApiError("This browser is offline: connect, then try again.");
    throw new ApiError("The service could not be reached. Is it running?");
  }
  if (!response.ok) throw await apiError(response);
  return response.json();
}

// ---------------------------------------------------------------- messages

function showError(heading, error) {
  if (error.status === 401 || error.status === 403) {
    ui.keyPanel.open = true; // the way out is the key field: show it
    ui.apiKey.focus();
  }
  ui.error.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = heading;
  ui.error.append(strong, document.createTextNode(error.message || String(error)));
  if (error.code) {
    const code = document.createElement("code");
    code.textContent = error.code;
    ui.error.append(" ", code);
  }
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

function setStatus(text) {
  ui.status.hidden = !text;
  ui.statusText.textContent = text || "";
  if (text) announce(text);
}

// Tell screen readers (politely: after what they are reading). Errors need not: role=alert.
function announce(text) {
  ui.announcer.textContent = text;
}

// ---------------------------------------------------------------- models

// `quietly`: a refresh of a list already shown (see refreshModels): the picker stays enabled, its
// options are rebuilt only if the models changed, and an error keeps the list as it was.
async function loadModels(quietly = false) {
  if (!quietly) ui.model.disabled = true;
  try {
    const body = await api("v1/models");
    // Read once the list is in: a model picked while it was fetched is the one kept.
    const previous = ui.model.value;
    const list = Array.isArray(body) ? body : body.models || [];
    // Only taggers: the feature extractors (mfcc, random_*) have no tags, so no taggram to show.
    const taggers = list.filter((m) => Array.isArray(m.tags) && m.tags.length > 0);
    const models = new Map(taggers.map((m) => [m.name ?? m.id ?? String(m), m]));
    const unchanged =
      models.size === state.models.size &&
      [...models].every(([name, m]) => state.models.get(name)?.version === m.version);
    if (quietly && unchanged) {
      state.models = models;
      return; // an open drop-down is left alone
    }
    state.models = models;
    ui.model.replaceChildren(
      ...[...state.models.keys()].map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = state.models.get(name).kind === "custom" ? `${name} (custom)` : name;
        return option;
      }),
    );
    const picked = sessionStorage.getItem(MODEL_STORAGE);
    const wanted = [previous, picked, body.default_model].find((name) => state.models.has(name));
    if (wanted) ui.model.value = wanted;
    ui.model.disabled = state.models.size === 0;
    describeModel();
    if (ui.error.dataset.source === "models") clearError();
  } catch (error) {
    if (quietly) return; // the list shown stays; tagging with a gone model says so
    ui.model.replaceChildren(new Option("unavailable"));
    showError("Could not list the models: ", error);
    ui.error.dataset.source = "models";
  }
}

// A custom tagger created (POST v1/models, `taggram models create`) or deleted while the page is
// open: the picker listed the models of the page's load only, so a new one was missing until a
// reload. The list is fetched again when the tab is shown or its window takes the focus again,
// the way back from the terminal or script that made the model. One fetch at a time, the page's
// first one included: a focus event during the first load started a second full load, which
// could end after the user had picked a model and put the picker back.
let refreshing = null;
function refreshModels() {
  if (refreshing) return;
  // No list yet (the service was starting, or unreachable): try again, saying so if it fails.
  refreshing = loadModels(state.models.size > 0).finally(() => {
    refreshing = null;
  });
}

function describeModel() {
  const meta = state.models.get(ui.model.value);
  if (!meta) {
    ui.modelInfo.textContent = "";
    return;
  }
  const tags = Array.isArray(meta.tags) ? `${meta.tags.length} tags` : "";
  ui.model.title = meta.description || "";
  const patch = meta.patch && meta.sample_rate ? meta.patch.hop_samples / meta.sample_rate : 0;
  ui.modelInfo.textContent = [tags, patch ? `${patch.toFixed(2)} s patches` : "", meta.description]
    .filter(Boolean)
    .join(" · ");
}

// ---------------------------------------------------------------- tagging

async function tagFile(file) {
  if (!file) return;
  state.inFlight?.abort();
  const controller = new AbortController();
  state.inFlight = controller;
  state.chosen = file;
  clearError();
  delete ui.error.dataset.source;
  ui.dropHint.textContent = file.name;
  // While the model list loads (a slow network) the picker holds a placeholder: the model this
  // tab picked last (the list keeps it too), else the service's default.
  const model = state.models.has(ui.model.value)
    ? ui.model.value
    : sessionStorage.getItem(MODEL_STORAGE) || "";
  setStatus(`Tagging ${file.name} with ${model || "the default model"}…`);
  // The last file's taggram stays in view, greyed: at full strength under "Tagging b.mp3…" it was
  // taken for b.mp3's (or, after a change of model, for the new model's).
  ui.result.setAttribute("aria-busy", "true");
  const form = new FormData();
  form.append("file", file, file.name);
  const query = new URLSearchParams({ taggram: "true" });
  if (model) query.set("model", model);
  try {
    const body = await api(`v1/tag?${query}`, {
      method: "POST",
      body: form,
      signal: controller.signal,
    });
    if (!body.taggram) throw new ApiError("The response has no taggram.");
    showResult(file, body);
    const strongest = body.tags.slice(0, 3).map((item) => item.tag).join(", ");
    announce(`${file.name} tagged with ${body.model?.name || model}; strongest tags: ${strongest}`);
  } catch (error) {
    if (error.name === "AbortError") return;
    // The previous result would pass for this file's: show only the error.
    ui.result.hidden = true;
    ui.empty.hidden = false;
    ui.player.pause();
    state.body = null;
    state.layout = null;
    showError(`Could not tag ${file.name}: `, error);
    // The service restarted without that model: list the models it has now (the picker offered
    // the gone one until the page was reloaded).
    if (error.code === "model_not_found") loadModels();
  } finally {
    if (state.inFlight === controller) {
      state.inFlight = null;
      setStatus("");
      ui.result.removeAttribute("aria-busy");
    }
  }
}

function showResult(file, body) {
  if (state.file !== file) {
    if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
    state.audioUrl = URL.createObjectURL(file);
    ui.player.src = state.audioUrl;
    ui.player.setAttribute("aria-label", `Recording: ${file.name}`); // not just "audio"
    ui.player.hidden = false;
    ui.playerNote.hidden = true;
    state.file = file;
  }
  state.body = body;
  ui.result.hidden = false;
  ui.empty.hidden = true;
  showSummary(file, body);
  render();
}

function showSummary(file, body) {
  const audio = body.audio || {};
  const model = body.model || {};
  const channels = { 1: "mono", 2: "stereo" }[audio.channels] || `${audio.channels} channels`;
  const facts = [
    `${formatSeconds(audio.duration_seconds, true)}`,
    // 44.1, 22.05, 11.025, 8 kHz: as many decimals as the rate needs (toFixed(2) said 44.10).
    audio.sample_rate ? `${+(audio.sample_rate / 1000).toFixed(3)} kHz ${channels}` : "",
    audio.format ? audio.format.split("/")[0] : "",
    `${body.patches} ${body.patches === 1 ? "patch" : "patches"}`,
    `${model.name} ${model.version || ""} (${model.provider || "?"})`,
    body.timings ? `${Math.round(body.timings.total_ms)} ms` : "",
  ].filter(Boolean);
  const name = document.createElement("span");
  name.className = "file";
  name.textContent = file.name;
  // What went wrong while decoding although the audio was tagged (a truncated file): without
  // it a 30 s recording cut at 11 s shows an 11 s taggram as if that were all of it.
  const warnings = (Array.isArray(body.warnings) ? body.warnings : []).map((text) => {
    const line = document.createElement("span");
    line.className = "warning";
    line.textContent = `warning: ${text}`;
    return line;
  });
  ui.summary.replaceChildren(name, document.createTextNode(facts.join(" · ")), ...warnings);
}

// The tags to show, best clip score first: (name, clip probability, taggram column index).
function shownTags(body) {
  const index = new Map(body.taggram.tags.map((tag, i) => [tag, i]));
  const limit = Number(ui.rows.value) || body.tags.length;
  return body.tags
    .filter((item) => index.has(item.tag))
    .slice(0, limit)
    .map((item) => ({ tag: item.tag, probability: item.probability, column: index.get(item.tag) }));
}

function render() {
  const body = state.body;
  if (!body) return;
  const tags = shownTags(body);
  ui.rowMark.hidden = true;
  renderTopTags(tags);
  drawTaggram(body, tags);
  moveCursor();
  if (!ui.cellMark.hidden) focusCell(state.cell.row, state.cell.column); // placed anew
}

function renderTopTags(tags) {
  ui.topTags.replaceChildren(
    ...tags.map(({ tag, probability }, index) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "tag";
      name.textContent = tag;
      const value = document.createElement("span");
      value.className = "p";
      value.textContent = probability.toFixed(3);
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
      bar.append(fill);
      li.append(name, value, bar);
      li.addEventListener("mouseenter", () => markRow(index));
      li.addEventListener("mouseleave", () => markRow(-1));
      return li;
    }),
  );
}

// ---------------------------------------------------------------- drawing

function viridis(t) {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
}

function niceStep(span, pixels, minGap) {
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  return steps.find((step) => (pixels * step) / span >= minGap) || steps[steps.length - 1];
}

function formatSeconds(seconds, long = false) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60 && !long) return `${+seconds.toFixed(1)}`;
  // Under a second in milliseconds' precision: a 40 ms sound effect read "0.0 s".
  if (seconds < 1) return `${+seconds.toFixed(3)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return clock(seconds);
}

// m:ss, rounded to the second as a whole: rounding the seconds alone made 119.6 s "1:60".
function clock(seconds) {
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

// Column boundaries in seconds: each patch owns the time nearer its centre than its neighbours',
// so the end-aligned last patch and overlapping patches (small hop) sit where they were heard.
function columnEdges(patches, duration) {
  const centres = patches.map((p) => (p.start_seconds + p.end_seconds) / 2);
  const edges = [0];
  for (let i = 1; i < centres.length; i += 1) edges.push((centres[i - 1] + centres[i]) / 2);
  edges.push(Math.max(duration, patches[patches.length - 1].end_seconds));
  return edges;
}

// The heat-map's labels in CSS pixels: 0.75 rem (12 px at the default 16), so that they follow a
// reader's larger default font size as the page's text does (browser zoom scales either way).
function labelSize() {
  return 0.75 * parseFloat(getComputedStyle(document.documentElement).fontSize);
}

function drawTaggram(body, tags) {
  const canvas = ui.canvas;
  const ctx = canvas.getContext("2d");
  const patches = body.taggram.patches;
  const duration = body.audio?.duration_seconds || patches[patches.length - 1].end_seconds;
  const em = labelSize(); // the geometry below is in these ems
  const font = `${em}px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif`;

  ctx.font = font;
  const labelWidth = Math.ceil(Math.max(40, ...tags.map((t) => ctx.measureText(t.tag).width)));
  // Exactly the width it is shown at: a wider drawing (a 320 px floor did that on 360 px phones)
  // is scaled down by the browser, and clicks, the tooltip, the cursor and the row outline,
  // placed in drawing pixels, then miss the cells they point at.
  const width = ui.wrap.clientWidth;
  const rowHeight = Math.round(em * (tags.length <= 12 ? 2.5 : tags.length <= 25 ? 1.7 : 1.25));
  const margin = { left: labelWidth + 14, right: 6.5 * em, top: 6, bottom: 3.2 * em };
  const plot = {
    x: margin.left,
    y: margin.top,
    w: Math.max(60, width - margin.left - margin.right),
    h: rowHeight * tags.length,
  };
  const height = plot.y + plot.h + margin.bottom;

  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = `${height}px`;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = font;
  // The page's colours (style.css: light or dark, as the system asks).
  const css = getComputedStyle(document.documentElement);
  const colour = (name) => css.getPropertyValue(name).trim();

  const values = tags.map(({ column }) => patches.map((p) => p.values[column]));
  const vmax = Math.max(1e-6, ...values.flat());
  const edges = columnEdges(patches, duration);
  const xOf = (seconds) => plot.x + (seconds / duration) * plot.w;

  // Cells: one row per tag, one column per patch; 0..vmax on the colour scale.
  values.forEach((row, r) => {
    row.forEach((value, c) => {
      const x0 = Math.floor(xOf(edges[c]));
      const x1 = Math.ceil(xOf(edges[c + 1]));
      ctx.fillStyle = viridis(value / vmax);
      ctx.fillRect(x0, plot.y + r * rowHeight, Math.max(1, x1 - x0), rowHeight);
    });
  });

  // Tag names, right-aligned against the plot.
  ctx.fillStyle = colour("--ink");
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  tags.forEach(({ tag }, r) => {
    ctx.fillText(tag, plot.x - 8, plot.y + (r + 0.5) * rowHeight);
  });

  // Time axis in seconds (m:ss past a minute).
  const axisY = plot.y + plot.h;
  ctx.strokeStyle = colour("--axis-line");
  ctx.fillStyle = colour("--axis-ink");
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const step = niceStep(duration, plot.w, 4.7 * em);
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const x = Math.round(xOf(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, axisY);
    ctx.lineTo(x, axisY + 5);
    ctx.stroke();
    ctx.fillText(formatSeconds(t), x, axisY + 0.6 * em);
  }
  ctx.fillStyle = colour("--muted");
  const unit = duration >= 60 ? "time (m:s)" : "time (s)";
  ctx.fillText(unit, plot.x + plot.w / 2, axisY + 1.8 * em);

  // Colour legend: a vertical bar with its scale.
  const legend = { x: plot.x + plot.w + 16, y: plot.y, w: 12, h: Math.max(plot.h, 5 * em) };
  const gradient = ctx.createLinearGradient(0, legend.y + legend.h, 0, legend.y);
  VIRIDIS.forEach((_, i) => gradient.addColorStop(i / (VIRIDIS.length - 1), viridis(i / (VIRIDIS.length - 1))));
  ctx.fillStyle = gradient;
  ctx.fillRect(legend.x, legend.y, legend.w, legend.h);
  ctx.fillStyle = colour("--axis-ink");
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const ticks = legend.h >= 10 * em ? [0, 0.25, 0.5, 0.75, 1] : [0, 0.5, 1];
  ticks.forEach((f) => {
    const y = legend.y + legend.h * (1 - f);
    ctx.fillRect(legend.x + legend.w, Math.round(y), 3, 1);
    ctx.fillText((vmax * f).toFixed(2), legend.x + legend.w + 6, Math.min(Math.max(y, legend.y + em / 2), legend.y + legend.h - em / 2));
  });

  state.layout = { plot, duration, edges, rowHeight, tags, values, xOf, width, em };
  // Geometry for tests and tools: one centre per drawn cell, in canvas (device) pixels.
  canvas.dataset.rows = String(tags.length);
  canvas.dataset.columns = String(patches.length);
  canvas.dataset.rowTags = JSON.stringify(tags.map((t) => t.tag));
  canvas.dataset.cellCentres = JSON.stringify({
    x: edges.slice(0, -1).map((e, c) => Math.round(((xOf(e) + xOf(edges[c + 1])) / 2) * dpr)),
    y: tags.map((_, r) => Math.round((plot.y + (r + 0.5) * rowHeight) * dpr)),
  });
  canvas.setAttribute(
    "aria-label",
    `Taggram of ${tags.length} tags over ${patches.length} patches; strongest: ${tags.slice(0, 3).map((t) => t.tag).join(", ")}`,
  );
  ui.cursor.style.top = `${plot.y}px`;
  ui.cursor.style.height = `${plot.h}px`;
}

// ---------------------------------------------------------------- playback and hover

function moveCursor() {
  const layout = state.layout;
  if (!layout || !state.body) return;
  const t = ui.player.currentTime || 0;
  const playing = !ui.player.paused || t > 0;
  ui.cursor.hidden = !playing;
  ui.cursor.style.left = `${layout.xOf(Math.min(t, layout.duration))}px`;
}

function followPlayback() {
  moveCursor();
  if (!ui.player.paused) requestAnimationFrame(followPlayback);
}

function cellAt(event) {
  const layout = state.layout;
  if (!layout) return null;
  const rect = ui.canvas.getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  const { plot } = layout;
  if (x < plot.x || x > plot.x + plot.w || y < plot.y || y >= plot.y + plot.h) return null;
  const seconds = ((x - plot.x) / plot.w) * layout.duration;
  const row = Math.floor((y - plot.y) / layout.rowHeight);
  let column = layout.edges.findIndex((edge, i) => i > 0 && seconds < edge) - 1;
  if (column < 0) column = layout.edges.length - 2;
  return { x, y, seconds, row, column };
}

// Outline row ``row`` of the heat-map and its tag in the list (-1: none).
function markRow(row) {
  const layout = state.layout;
  const shown = layout && row >= 0 && row < layout.tags.length;
  ui.rowMark.hidden = !shown;
  [...ui.topTags.children].forEach((li, i) => li.classList.toggle("marked", shown && i === row));
  if (!shown) return;
  const { plot, rowHeight } = layout;
  ui.rowMark.style.left = `${plot.x - 2}px`;
  ui.rowMark.style.top = `${plot.y + row * rowHeight - 2}px`;
  ui.rowMark.style.width = `${plot.w + 4}px`;
  ui.rowMark.style.height = `${rowHeight + 4}px`;
}

// A cell's tag, probability and patch times as the axis writes them: in seconds ("3.0", "6.0",
// inSeconds), or m:ss in a recording of a minute or more ("12:45", "12:48"; "765.1" was
// hard to find on an axis reading 12:00).
function cellFacts(row, column) {
  const { tags, values, duration } = state.layout;
  const patch = state.body.taggram.patches[column];
  const inSeconds = duration < 60;
  const time = (seconds) => (inSeconds ? seconds.toFixed(1) : clock(seconds));
  const probability = values[row][column].toFixed(3);
  return [tags[row].tag, probability, time(patch.start_seconds), time(patch.end_seconds), inSeconds];
}

function showTooltip(row, column, x, y) {
  const [tag, probability, start, end, inSeconds] = cellFacts(row, column);
  ui.tooltip.textContent = `${tag}: ${probability} · ${start}–${end}${inSeconds ? " s" : ""}`;
  ui.tooltip.style.left = `${x}px`;
  ui.tooltip.style.top = `${y}px`;
  ui.tooltip.hidden = false;
  // Right of the point, or left of it where it would run past the heat-map: past the page's
  // edge it was cut off and widened the page (a sideways scroll on a phone).
  const past = x + 12 + ui.tooltip.offsetWidth > ui.wrap.clientWidth;
  ui.tooltip.classList.toggle("left", past);
}

function hover(event) {
  const cell = cellAt(event);
  markRow(cell ? cell.row : -1);
  if (cell) showTooltip(cell.row, cell.column, cell.x, cell.y);
  else ui.tooltip.hidden = true;
}

function playFrom(seconds) {
  if (!state.audioUrl || ui.player.error) return; // nothing to play: no cursor either
  ui.player.currentTime = seconds;
  moveCursor();
  ui.player.play().catch(() => {}); // autoplay policies may refuse; the cursor still moved
}

function seek(event) {
  const cell = cellAt(event);
  if (!cell) return;
  state.cell = { row: cell.row, column: cell.column }; // the arrow keys go on from here
  playFrom(cell.seconds);
}

// ---------------------------------------------------------------- keyboard

// The heat-map is one focusable element: the arrow keys (Home, End: first and last patch; Page
// Up, Page Down: ten patches, else the middle of a 15 min recording was 150 presses away) move an
// outlined cell with its tooltip, Enter or Space plays from its start, and screen readers, which
// cannot see the canvas, are told its tag, probability and time.
const MOVES = {
  ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
  Home: [0, -Infinity], End: [0, Infinity], PageUp: [0, -10], PageDown: [0, 10],
};

function focusCell(row, column) {
  const layout = state.layout;
  if (!layout) return;
  const clamp = (value, count) => Math.max(0, Math.min(count - 1, value));
  const r = clamp(row, layout.tags.length);
  const c = clamp(column, layout.edges.length - 1);
  state.cell = { row: r, column: c };
  const { plot, rowHeight, edges, xOf } = layout;
  const [x0, x1] = [xOf(edges[c]), xOf(edges[c + 1])];
  const y0 = plot.y + r * rowHeight;
  Object.assign(ui.cellMark.style, {
    left: `${x0}px`, top: `${y0}px`, width: `${x1 - x0}px`, height: `${rowHeight}px`,
  });
  ui.cellMark.hidden = false;
  showTooltip(r, c, (x0 + x1) / 2, y0 + rowHeight / 2);
  const [tag, probability, start, end, inSeconds] = cellFacts(r, c);
  announce(`${tag}, ${probability}, ${start} to ${end}${inSeconds ? " seconds" : ""}`);
}

function onKey(event) {
  const play = event.key === "Enter" || event.key === " ";
  const move = MOVES[event.key] || (play && [0, 0]);
  if (!move || !state.layout || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault(); // the arrows and Space would scroll the page
  focusCell(state.cell.row + move[0], state.cell.column + move[1]); // clamped to this taggram
  if (play) playFrom(state.layout.edges[state.cell.column]);
}

// ---------------------------------------------------------------- wiring

function chooseFile(file) {
  if (!file) return;
  tagFile(file);
}

ui.file.addEventListener("change", () => {
  const file = ui.file.files[0];
  // Emptied, so that choosing the same file again (after a 429 or a fix on the server) is a
  // change: the browser fires none for the file the input already holds.
  ui.file.value = "";
  chooseFile(file);
});
// Files are taken wherever they are dropped on the page: one dropped beside the drop zone was
// opened by the browser in the page's place, its taggram lost. Dragged text is not taken (the drop
// zone lit up for it, and nothing came of the drop), and of several files the first is tagged.
const carriesFiles = (event) => event.dataTransfer.types.includes("Files");
ui.drop.addEventListener("dragover", (event) => {
  ui.drop.classList.toggle("dragging", carriesFiles(event));
});
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("dragging"));
document.addEventListener("dragover", (event) => {
  if (carriesFiles(event)) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  ui.drop.classList.remove("dragging");
  if (!carriesFiles(event)) return;
  event.preventDefault();
  const files = event.dataTransfer.files;
  chooseFile(files[0]);
  if (files.length > 1) {
    const note = `the first of ${files.length} files: one at a time`;
    ui.dropHint.textContent = `${files[0].name} (${note})`;
  }
});

ui.model.addEventListener("change", () => {
  sessionStorage.setItem(MODEL_STORAGE, ui.model.value);
  describeModel();
  if (state.chosen) tagFile(state.chosen);
});
ui.rows.addEventListener("change", render);
// The canvas is drawn in the page's colours: again when the system turns dark or light.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", render);

// The key panel floats over the model picker: like a menu it closes on Escape and when the focus
// leaves it, which otherwise went on to fields the open panel covered.
function closeKeyPanel() {
  const inside = ui.keyPanel.contains(document.activeElement);
  ui.keyPanel.open = false;
  if (inside) ui.keyPanel.querySelector("summary").focus(); // not lost to the page's top
}

ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  closeKeyPanel(); // reopened if the service still refuses the key
  ui.apiKey.dispatchEvent(new Event("change"));
});
ui.keyPanel.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !ui.keyPanel.open) return;
  event.preventDefault();
  closeKeyPanel();
});
// Only for a focus gone to another part of the page: not for one gone to another window (to copy
// the key from), nor in Safari for a click on the summary, which takes no focus there.
ui.keyPanel.addEventListener("focusout", (event) => {
  const to = event.relatedTarget;
  if (to && !ui.keyPanel.contains(to)) ui.keyPanel.open = false;
});
ui.apiKey.addEventListener("change", () => {
  const key = ui.apiKey.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  loadModels();
});

// The service decodes more formats than a browser plays (AIFF, AU, WMA…): say so, where a greyed
// player reading 0:00 and clicks that moved the cursor but played nothing left a person guessing.
ui.player.addEventListener("error", () => {
  if (!state.file) return;
  ui.playerNote.textContent = `This browser cannot play ${state.file.name}: the taggram is shown without sound.`;
  ui.playerNote.hidden = false;
  ui.player.hidden = true;
});
ui.player.addEventListener("play", () => requestAnimationFrame(followPlayback));
ui.player.addEventListener("seeked", moveCursor);
ui.player.addEventListener("timeupdate", moveCursor);
ui.canvas.addEventListener("mousemove", hover);
ui.canvas.addEventListener("mouseleave", () => {
  ui.tooltip.hidden = true;
  markRow(-1);
});
ui.canvas.addEventListener("click", seek);
ui.canvas.addEventListener("keydown", onKey);
// Outlined when reached by Tab, not when clicked (the click plays; the pointer is the mark).
ui.canvas.addEventListener("focus", () => {
  if (ui.canvas.matches(":focus-visible")) focusCell(state.cell.row, state.cell.column);
});
ui.canvas.addEventListener("blur", () => {
  ui.cellMark.hidden = true;
  ui.tooltip.hidden = true;
});

// Drawn again when its width changes, or the font size: the summary, its text in rem, then
// changes size too (nothing tells a page that the browser's font size setting changed).
let resizeFrame = 0;
const resized = new ResizeObserver(() => {
  cancelAnimationFrame(resizeFrame);
  resizeFrame = requestAnimationFrame(() => {
    const layout = state.layout;
    if (!layout) return;
    if (Math.abs(ui.wrap.clientWidth - layout.width) > 1 || labelSize() !== layout.em) render();
  });
});
resized.observe(ui.wrap);
resized.observe(ui.summary);

refreshModels();
window.addEventListener("focus", refreshModels);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") refreshModels();
});
