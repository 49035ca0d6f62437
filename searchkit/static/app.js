// The search page. Everything shown comes from the index and is untrusted: it is put on the
// page as text nodes (textContent, createTextNode), never parsed as HTML.
"use strict";

const STOP = new Set(["the", "and", "for", "are", "was", "with", "that", "this", "from", "what",
  "how", "why", "who", "which", "when", "where", "does", "into", "about", "its", "it's", "of",
  "to", "in", "on", "at", "by", "an", "is", "be", "or", "as", "do", "i", "a"]);
const $ = (id) => document.getElementById(id);
let lastQuery = "";
let opener = null;

function apiKey() { return sessionStorage.getItem("searchkit-key") || ""; }

async function call(path, options = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    if (response.status === 401) $("key-box").open = true;
    throw new Error((data && data.error) || ("HTTP " + response.status));
  }
  return data;
}

function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOP.has(w)))];
}

function escapeRegExp(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

// Append ``text`` to ``parent`` with every word starting with a query term in a <mark>.
function appendHighlighted(parent, text, terms) {
  if (!terms.length) { parent.append(document.createTextNode(text)); return; }
  const pattern = new RegExp("(?<![\\p{L}\\p{N}])(?:" + terms.map(escapeRegExp).join("|") + ")", "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(document.createTextNode(text.slice(last, match.index)));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    parent.append(mark);
    last = match.index + match[0].length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function searchBody() {
  const body = { query: $("q").value, k: Number($("k").value) || 10 };
  if ($("mode").value) body.mode = $("mode").value;
  const filters = {};
  const path = $("path").value.trim();
  const types = $("type").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (path) filters.path = path;
  if (types.length) filters.type = types;
  if (Object.keys(filters).length) body.filters = filters;
  return body;
}

async function search(event) {
  if (event) event.preventDefault();
  const body = searchBody();
  if (!body.query.trim()) return;
  lastQuery = body.query;
  closeDocument(false);
  setStatus("Searching…");
  const started = performance.now();
  try {
    const data = await call("/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    renderHits(data.hits, queryTerms(body.query));
    const ms = Math.round(performance.now() - started);
    const n = data.hits.length;
    setStatus(n ? `${n} result${n === 1 ? "" : "s"} (${data.mode}, ${ms} ms)` : "No results.");
  } catch (error) {
    $("results").replaceChildren();
    setStatus(error.message, true);
  }
}

function renderHits(hits, terms) {
  const list = $("results");
  list.replaceChildren();
  for (const hit of hits) {
    const item = element("li", "hit");
    const head = element("div", "hit-head");
    head.append(element("span", "rank", hit.rank + "."));
    const open = element("button", "hit-open", hit.title || hit.key);
    open.type = "button";
    open.addEventListener("click", () => openDocument(hit, terms, open));
    head.append(open);
    head.append(element("span", "score", "score " + Number(hit.score).toFixed(3)));
    item.append(head);
    item.append(element("div", "path", hit.path || hit.key));
    const passage = element("p", "passage");
    appendHighlighted(passage, hit.passage ? hit.passage.text : hit.snippet, terms);
    item.append(passage);
    list.append(item);
  }
}

async function openDocument(hit, terms, button) {
  opener = button;
  const start = hit.passage ? hit.passage.char_start : 0;
  const end = hit.passage ? hit.passage.char_end : 0;
  try {
    const doc = await call(`/documents/${Number(hit.doc_id)}?start=${start}&end=${end}`);
    $("doc-title").textContent = doc.title || doc.key;
    $("doc-path").textContent = (doc.path || doc.key) + ` (characters ${doc.offset}–${doc.offset + doc.text.length} of ${doc.length})`;
    const pre = $("doc-text");
    pre.replaceChildren();
    const from = Math.max(0, start - doc.offset);
    const to = Math.max(from, end - doc.offset);
    if (doc.offset > 0) pre.append(document.createTextNode("… "));
    appendHighlighted(pre, doc.text.slice(0, from), terms);
    const passage = element("mark", "passage-mark");
    appendHighlighted(passage, doc.text.slice(from, to), terms);
    pre.append(passage);
    appendHighlighted(pre, doc.text.slice(to), terms);
    if (doc.offset + doc.text.length < doc.length) pre.append(document.createTextNode(" …"));
    for (const mark of passage.querySelectorAll("mark")) mark.className = "term";
    $("document").hidden = false;
    passage.scrollIntoView({ block: "center" });
    pre.focus();
  } catch (error) {
    setStatus(error.message, true);
  }
}

function closeDocument(refocus = true) {
  $("document").hidden = true;
  if (refocus && opener) opener.focus();
}

async function showIndex() {
  try {
    const stats = await call("/stats");
    const model = stats.model ? stats.model.name : "no model yet";
    $("index-info").textContent = `${stats.documents} documents · ${model}`;
  } catch (error) {
    $("index-info").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", search);
  $("doc-close").addEventListener("click", () => closeDocument());
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => {
    sessionStorage.setItem("searchkit-key", e.target.value.trim());
    showIndex();
  });
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); $("q").focus(); $("q").select(); }
    if (e.key === "Escape" && !$("document").hidden) closeDocument();
  });
  const initial = new URLSearchParams(location.search).get("q");
  showIndex();
  if (initial) { $("q").value = initial; search(); }
});
