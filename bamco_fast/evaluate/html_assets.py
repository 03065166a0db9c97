"""Style sheet and script of the HTML pages (inlined into each page: no CDN, no network).

``PAGE_CSS`` is shared by the VQA report and the matching page. ``REPORT_JS`` renders the report's
questions from the JSON block ``<script id="report-data" type="application/json">`` one page at a
time: filters (open/closed, wrong under exact match, correct only under the published containment,
text search), sorting and pagination, so thousands of questions stay responsive. The view is kept in
the address's fragment (e.g. ``report_test.html#side=open&wrong=1&sort=recall``), so a link opens the
same view. Text is inserted with ``textContent`` (never parsed as HTML).
"""

from __future__ import annotations

__all__ = ["PAGE_CSS", "REPORT_JS"]

PAGE_CSS = """
:root { --ok: #1b7f3b; --bad: #b3261e; --warn: #9a6700; --muted: #5f6b7a; --line: #d9dee5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 24px 40px;
  color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 18px 0 4px; }
h2 { font-size: 16px; margin: 22px 0 6px; }
.meta, .muted { color: var(--muted); }
.note { color: var(--muted); font-size: 13px; margin: 2px 0; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
table.summary td.num, table.summary th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary td.ci { color: var(--muted); font-variant-numeric: tabular-nums; }
.controls { display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center; padding: 10px 0;
  position: sticky; top: 0; background: #fff; z-index: 2; border-bottom: 1px solid var(--line); }
.controls label { white-space: nowrap; }
button { padding: 3px 10px; }
img.thumb { width: 120px; height: auto; border-radius: 3px; display: block; }
img.small { width: 44px; height: 44px; object-fit: cover; border-radius: 2px; margin: 0 3px 3px 0; }
td.qa { width: 30%; }
td.verdicts { width: 200px; }
td.entity { min-width: 300px; }
.strip { display: flex; flex-wrap: wrap; margin-top: 4px; max-width: 300px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; margin: 0 4px 4px 0; font-size: 12px;
  border: 1px solid currentColor; white-space: nowrap; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); } .na { color: var(--muted); }
.side { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.empty-pred { color: var(--muted); font-style: italic; }
.question { font-weight: 500; }
.kt { color: var(--muted); font-size: 12px; margin-top: 3px; }
.qid { color: var(--muted); font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(100%, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px; display: flex; gap: 14px; }
.card .cols { display: flex; gap: 14px; flex: 1; flex-wrap: wrap; }
.card .col { flex: 1; min-width: 260px; }
ol.rank { margin: 2px 0 8px; padding-left: 22px; }
ol.rank li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 420px; }
li.hit { color: var(--ok); font-weight: 600; }
.tables { display: flex; flex-wrap: wrap; gap: 0 40px; align-items: flex-start; }
.card .pic { width: 170px; flex: none; }
.card h3 { font-size: 14px; margin: 0 0 4px; }
.kind { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
"""

REPORT_JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var ROWS = DATA.rows, IM = DATA.images;
  function $(id) { return document.getElementById(id); }
  var state = { side: "all", wrong: false, lenient: false, text: "", sort: "order", size: DATA.page_size, page: 0 };
  var view = [];

  function cmp(x, y) { return String(x).localeCompare(String(y), undefined, { numeric: true }); }
  function byOrder(a, b) { return a.n - b.n; }
  var SORTS = {
    order: byOrder,
    qid: function (a, b) { return cmp(a.qid, b.qid) || byOrder(a, b); },
    image: function (a, b) { return cmp(a.name || "", b.name || "") || byOrder(a, b); },
    wrong: function (a, b) { return a.v.exact - b.v.exact || a.v.published - b.v.published || byOrder(a, b); },
    recall: function (a, b) {
      var x = a.v.recall === null ? 2 : a.v.recall, y = b.v.recall === null ? 2 : b.v.recall;
      return x - y || byOrder(a, b);
    },
    entity: function (a, b) { return cmp(a.ent || "~", b.ent || "~") || byOrder(a, b); },
    answer: function (a, b) { return cmp(a.a.toLowerCase(), b.a.toLowerCase()) || byOrder(a, b); }
  };

  function keep(r) {
    if (state.side === "open" && r.v.closed) { return false; }
    if (state.side === "closed" && !r.v.closed) { return false; }
    if (state.wrong && r.v.exact) { return false; }
    if (state.lenient && !r.v.lenient) { return false; }
    if (state.text) {
      var hay = [r.qid, r.q, r.a, r.p, r.ent || "", r.kt, r.name || ""].join(" ").toLowerCase();
      if (hay.indexOf(state.text) < 0) { return false; }
    }
    return true;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }
  function badge(label, value) {
    var cls = value === null ? "na" : value ? "ok" : "bad";
    var mark = value === null ? "n/a" : value ? "\u2713" : "\u2717";
    return el("span", "badge " + cls, label + " " + mark);
  }
  function score(label, value) {
    var cls = value >= 0.999 ? "ok" : value > 0 ? "warn" : "bad";
    return el("span", "badge " + cls, label + " " + value.toFixed(2));
  }
  function image(id, cls, title) {
    if (!id || !IM[id]) { return el("span", "muted", "no image"); }
    var img = el("img", cls);
    img.src = IM[id];
    img.alt = title || "";
    img.title = title || "";
    return img;
  }

  function verdicts(r) {
    var td = el("td", "verdicts"), v = r.v;
    td.appendChild(badge(v.closed ? "closed exact" : "open exact", v.exact));
    if (!v.closed) {
      td.appendChild(score("recall", v.recall));
      td.appendChild(badge("containment", v.containment));
    }
    td.appendChild(badge("published rules", v.published));
    if (v.lenient) { td.appendChild(el("span", "badge warn", "correct only under containment: " + v.lenient.replace(/_/g, " "))); }
    return td;
  }

  function entityCell(r) {
    var td = el("td", "entity");
    if (!r.ent) { td.appendChild(el("span", "muted", DATA.no_strip || "no entity retrieved")); return td; }
    td.appendChild(el("div", null, r.ent));
    if (r.strip) {
      var strip = el("div", "strip");
      r.strip.ids.forEach(function (id) { strip.appendChild(image(id, "small", r.ent)); });
      td.appendChild(strip);
      td.appendChild(el("div", "note", r.strip.ids.length + " of " + r.strip.drawn + " drawn images shown (" +
        r.strip.distinct + " distinct; drawn with replacement)"));
    } else if (DATA.no_strip) {
      td.appendChild(el("div", "note", DATA.no_strip));
    }
    return td;
  }

  function rowElement(r) {
    var tr = el("tr", "question-row");
    tr.setAttribute("data-qid", r.qid);
    tr.setAttribute("data-side", r.v.closed ? "closed" : "open");
    tr.setAttribute("data-exact", String(r.v.exact));
    tr.setAttribute("data-lenient", r.v.lenient ? "1" : "0");
    var num = el("td", "num", String(r.n + 1));
    num.appendChild(el("div", "qid", "qid " + r.qid));
    tr.appendChild(num);
    var pic = el("td", "img");
    pic.appendChild(image(r.img, "thumb", r.name));
    tr.appendChild(pic);
    var qa = el("td", "qa");
    qa.appendChild(el("div", "question", r.q));
    qa.appendChild(el("div", "kt", r.kk === "question" ? "knowledge text: the question" : "knowledge text (" + r.kk + "): " + r.kt));
    tr.appendChild(qa);
    var gold = el("td", "gold", r.a);
    gold.appendChild(el("div", "side", r.v.closed ? "closed" : "open"));
    tr.appendChild(gold);
    tr.appendChild(r.p ? el("td", "pred", r.p) : el("td", "pred empty-pred", "(empty)"));
    tr.appendChild(verdicts(r));
    tr.appendChild(entityCell(r));
    return tr;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(view.length / state.size));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var start = state.page * state.size;
    var body = $("rows"), frag = document.createDocumentFragment();
    view.slice(start, start + state.size).forEach(function (r) { frag.appendChild(rowElement(r)); });
    body.textContent = "";
    body.appendChild(frag);
    $("count").textContent = view.length + " of " + ROWS.length + " questions";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    $("none").hidden = view.length > 0;
    writeHash();
  }

  function writeHash() {
    var p = new URLSearchParams();
    if (state.side !== "all") { p.set("side", state.side); }
    if (state.wrong) { p.set("wrong", "1"); }
    if (state.lenient) { p.set("lenient", "1"); }
    if (state.text) { p.set("q", state.text); }
    if (state.sort !== "order") { p.set("sort", state.sort); }
    if (state.size !== DATA.page_size) { p.set("size", String(state.size)); }
    if (state.page) { p.set("page", String(state.page + 1)); }
    try { history.replaceState(null, "", "#" + p.toString()); } catch (err) { /* a view without history */ }
  }

  function readHash() {
    var p = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    if (["all", "open", "closed"].indexOf(p.get("side")) >= 0) { state.side = p.get("side"); }
    state.wrong = p.get("wrong") === "1";
    state.lenient = p.get("lenient") === "1";
    state.text = (p.get("q") || "").trim().toLowerCase();
    if (SORTS[p.get("sort")]) { state.sort = p.get("sort"); }
    var size = parseInt(p.get("size"), 10);
    if ([25, 50, 100, 200].indexOf(size) >= 0) { state.size = size; }
    state.page = Math.max((parseInt(p.get("page"), 10) || 1) - 1, 0);
    $("side").value = state.side;
    $("wrong").checked = state.wrong;
    $("lenient").checked = state.lenient;
    $("text").value = state.text;
    $("sort").value = state.sort;
    $("size").value = String(state.size);
  }

  function update(keepPage) {
    view = ROWS.filter(keep).sort(SORTS[state.sort] || byOrder);
    if (!keepPage) { state.page = 0; }
    render();
  }

  $("side").addEventListener("change", function (e) { state.side = e.target.value; update(); });
  $("wrong").addEventListener("change", function (e) { state.wrong = e.target.checked; update(); });
  $("lenient").addEventListener("change", function (e) { state.lenient = e.target.checked; update(); });
  $("text").addEventListener("input", function (e) { state.text = e.target.value.trim().toLowerCase(); update(); });
  $("sort").addEventListener("change", function (e) { state.sort = e.target.value; update(); });
  $("size").addEventListener("change", function (e) { state.size = parseInt(e.target.value, 10); update(); });
  $("prev").addEventListener("click", function () { state.page -= 1; render(); window.scrollTo(0, $("questions").offsetTop); });
  $("next").addEventListener("click", function () { state.page += 1; render(); window.scrollTo(0, $("questions").offsetTop); });
  window.addEventListener("hashchange", function () { readHash(); update(true); });
  readHash();
  update(true);
})();
"""
