// The mumo page: built from /info, talks to the same API as any client. No build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let token = localStorage.getItem("mumo-token") || "";

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: text }; }
  if (!response.ok) {
    const error = new Error((body && (body.error || body.detail)) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function say(id, message, isError = false) {
  const node = $(id);
  node.textContent = message;
  node.classList.toggle("error", isError);
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function fileUrl(id, column) {
  const response = await fetch(`/files/${id}/${encodeURIComponent(column)}`, { headers: headers() });
  if (!response.ok) return null;
  return URL.createObjectURL(await response.blob());
}

// ------------------------------------------------------------------------------------ search
async function search(body, label) {
  say("search-status", `searching ${label}…`);
  try {
    const isForm = body instanceof FormData;
    const answer = await api("/search", {
      method: "POST",
      body: isForm ? body : JSON.stringify(body),
      headers: isForm ? {} : { "Content-Type": "application/json" },
    });
    await showHits(answer.hits);
    say("search-status", `${answer.hits.length} results ${label}`);
  } catch (error) {
    say("search-status", error.message, true);
  }
}

async function showHits(hits) {
  const grid = $("results");
  grid.replaceChildren();
  const column = info.index.column;
  const kind = info.index.kind;
  for (const hit of hits) {
    const card = el("div", { class: "card result", "data-id": String(hit.id) });
    if (kind === "image" || kind === "audio") {
      const url = await fileUrl(hit.id, column);
      if (url) card.append(kind === "image" ? el("img", { src: url, alt: `row ${hit.id}` }) : el("audio", { src: url, controls: "" }));
    }
    const text = Object.entries(hit.row)
      .filter(([key, value]) => key !== "id" && key !== column && value !== null && typeof value !== "object")
      .slice(0, 3)
      .map(([key, value]) => `${key}: ${String(value).slice(0, 80)}`)
      .join(" · ");
    card.append(
      el("span", { class: "score" }, `#${hit.id} · ${hit.score.toFixed(3)}`),
      el("span", { class: "meta" }, text),
      el("button", { class: "link more", type: "button", onclick: () => search({ like: hit.id, k: Number($("k").value) || 12 }, `like #${hit.id}`) }, "More like this"),
    );
    grid.append(card);
  }
}

function setupSearch() {
  if (!info.index) return;
  $("search").hidden = false;
  const kinds = info.index.query_kinds;
  const fileKind = kinds.includes("image") ? "image" : kinds.includes("audio") ? "audio" : null;
  if (!kinds.includes("text")) $("query").hidden = true;
  if (fileKind) {
    const input = $("query-file");
    input.hidden = false;
    input.accept = fileKind === "image" ? "image/*" : "audio/*";
    input.dataset.kind = fileKind;
  }
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const k = Number($("k").value) || 12;
    const file = $("query-file").files[0];
    if (file) {
      const form = new FormData();
      form.append($("query-file").dataset.kind, file);
      form.append("k", String(k));
      search(form, `like ${file.name}`);
    } else if ($("query").value.trim()) {
      search({ text: $("query").value.trim(), k }, `for “${$("query").value.trim()}”`);
    }
  });
}

// ------------------------------------------------------------------------------------ predict
function setupPredict() {
  $("predict").hidden = false;
  const form = $("predict-form");
  const generatesImages = info.generates === "images";
  $("predict-title").textContent = generatesImages ? "Generate" : "Predict";
  for (const [column, kind] of Object.entries(info.inputs)) {
    let input;
    if (kind === "image" || kind === "audio") input = el("input", { type: "file", name: column, accept: `${kind}/*` });
    else if (kind === "numeric") input = el("input", { type: "number", step: "any", name: column });
    else if (kind === "text") input = el("textarea", { name: column, placeholder: `${column} (empty: absent)` });
    else input = el("input", { type: "text", name: column });
    form.append(el("label", {}, `${column} (${kind})`, input));
  }
  form.append(el("button", { type: "submit" }, generatesImages ? "Generate" : "Predict"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("predict-status", "working…");
    $("prediction").replaceChildren();
    try {
      if (generatesImages) {
        const row = {};
        for (const [column, kind] of Object.entries(info.inputs)) {
          const value = form.elements[column].value;
          if (value && kind !== "image" && kind !== "audio") row[column] = kind === "numeric" ? Number(value) : value;
        }
        const answer = await api("/generate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rows: [row], n: 4 }) });
        const box = el("div", { class: "generated" });
        for (const uri of answer.images[0]) box.append(el("img", { src: uri, alt: "generated image" }));
        $("prediction").append(box);
      } else {
        const data = new FormData();
        for (const [column, kind] of Object.entries(info.inputs)) {
          const field = form.elements[column];
          if (kind === "image" || kind === "audio") { if (field.files[0]) data.append(column, field.files[0]); }
          else if (field.value !== "") data.append(column, field.value);
        }
        const answer = await api("/predict", { method: "POST", body: data });
        showPrediction(answer.predictions[0]);
      }
      say("predict-status", "done");
    } catch (error) {
      say("predict-status", error.message, true);
    }
  });
}

function showPrediction(result) {
  const box = $("prediction");
  const probabilities = result.probabilities || (result.match_probability !== undefined ? { match: result.match_probability } : null);
  if (result.prediction !== undefined && result.prediction !== null) box.append(el("p", { class: "answer" }, `prediction: ${result.prediction}`));
  if (result.generated !== undefined) box.append(el("p", { class: "answer" }, `generated: ${result.generated}`));
  if (probabilities) {
    const bars = el("div", { class: "bars" });
    const entries = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of entries) {
      bars.append(el("div", { class: "bar", "data-label": label },
        el("span", {}, label),
        el("span", { class: "fill", style: `width: ${(100 * p).toFixed(1)}%` }),
        el("span", { class: "value" }, p.toFixed(3))));
    }
    box.append(bars);
  }
  if (!box.children.length) box.append(el("pre", {}, JSON.stringify(result, null, 2)));
}

// ------------------------------------------------------------------------------------ start
async function start() {
  try {
    info = await api("/info");
  } catch (error) {
    if (error.status === 401) {
      $("token-form").hidden = false;
      say("about", "this server needs a token");
      return;
    }
    say("about", error.message);
    return;
  }
  $("about").textContent = `${info.run} · ${info.task}` + (info.index ? ` · ${info.index.vectors} indexed ${info.index.column}` : "");
  setupSearch();
  setupPredict();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value;
  localStorage.setItem("mumo-token", token);
  $("token-form").hidden = true;
  start();
});

start();
