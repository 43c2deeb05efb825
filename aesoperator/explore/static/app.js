// The explorer page: routing (#/search, #/entity, #/memory, #/sources), calls to the JSON API
// with the bearer token from sessionStorage, and rendering. Every piece of data goes into the
// page through textContent or a checked attribute, never as markup: ingested names and texts are
// untrusted.
"use strict";

(function () {
  const TOKEN_KEY = "aesop-explore-token";
  const ME_KEY = "aesop-explore-me";
  const state = { me: null, graph: null, graphNotes: new Map(), entityId: null, pollTimer: null };
  window.aesopTimings = {};

  // -- small DOM helpers ------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, options, children) {
    const node = document.createElement(tag);
    const o = options || {};
    if (o.text !== undefined && o.text !== null) node.textContent = String(o.text);
    if (o.cls) node.className = o.cls;
    if (o.href) node.setAttribute("href", safeHref(o.href));
    if (o.title) node.title = String(o.title);
    if (o.data) for (const [k, v] of Object.entries(o.data)) node.dataset[k] = String(v);
    for (const child of children || []) if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    return node;
  }

  // Only the page's own routes and web URLs become links; anything else (javascript:, data:) does not.
  function safeHref(href) {
    const text = String(href);
    if (text.startsWith("#/")) return text;
    try {
      const url = new URL(text);
      if (url.protocol === "http:" || url.protocol === "https:") return url.href;
    } catch (e) { /* not a URL */ }
    return "#";
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function when(iso) {
    if (!iso) return "";
    return String(iso).replace("T", " ").replace(/\.\d+/, "").replace("Z", "").replace("+00:00", "") + " UTC";
  }

  function entityLink(brief) {
    return el("a", { href: "#/entity?id=" + encodeURIComponent(brief.id), text: brief.name, title: brief.id, cls: "entity-link" });
  }

  function row(cells, header) {
    return el("tr", {}, cells.map((c) => (c instanceof Node ? el(header ? "th" : "td", {}, [c]) : el(header ? "th" : "td", { text: c }))));
  }

  function fillTable(table, headers, rows) {
    clear(table);
    table.appendChild(row(headers, true));
    for (const r of rows) table.appendChild(r);
    if (!rows.length) table.appendChild(row(["none"].concat(headers.slice(1).map(() => ""))));
  }

  // -- the API ----------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, error, message) { super(message); this.status = status; this.error = error; }
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(path, params, init) {
    const query = params ? "?" + params.toString() : "";
    const headers = Object.assign({ Accept: "application/json" }, (init && init.headers) || {});
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const response = await fetch("api/" + path + query, Object.assign({}, init || {}, { headers, credentials: "omit", cache: "no-store" }));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new ApiError(response.status, body && body.error ? body.error : "error", body && body.message ? body.message : "HTTP " + response.status);
    }
    return body;
  }

  function showError(err, where) {
    if (err instanceof ApiError && err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(ME_KEY);
      showLogin("Your token was refused (" + err.message + "). Sign in again.");
      return;
    }
    const banner = $("banner");
    banner.textContent = (where ? where + ": " : "") + (err && err.message ? err.message : String(err));
    banner.dataset.status = err instanceof ApiError ? String(err.status) : "0";
    banner.hidden = false;
  }

  function hideError() { $("banner").hidden = true; }

  // -- views and routing ------------------------------------------------------------------------
  const VIEWS = ["login", "search", "entity", "memory", "sources"];

  function show(view) {
    for (const v of VIEWS) $("view-" + v).hidden = v !== view;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
    document.body.dataset.view = view;
  }

  function showLogin(message) {
    state.me = null;
    $("nav").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
    show("login");
  }

  function route() {
    if (!state.me) return;
    hideError();
    const hash = location.hash || "#/search";
    const [path, query] = hash.slice(1).split("?");
    const params = new URLSearchParams(query || "");
    const view = path.replace(/^\//, "") || "search";
    if (view === "entity" && params.get("id")) renderEntity(params.get("id"));
    else if (view === "memory") renderMemory(params.get("agent"));
    else if (view === "sources") renderSources();
    else renderSearch(params);
  }

  function done(what) {
    window.aesopTimings[what] = performance.now();
    document.body.dataset.loaded = what;
  }

  // -- sign in ----------------------------------------------------------------------------------
  // The caller (`api/me`) is kept for the tab beside the token, so a page load shows its view at
  // once and checks the caller again in the background (a refused token leads back to sign-in).
  async function signIn(candidate) {
    if (candidate !== undefined) {
      sessionStorage.setItem(TOKEN_KEY, candidate);
      sessionStorage.removeItem(ME_KEY);
    }
    const cached = token() ? sessionStorage.getItem(ME_KEY) : null;
    if (cached) {
      try { applyMe(JSON.parse(cached)); } catch (e) { sessionStorage.removeItem(ME_KEY); }
    }
    if (state.me) {
      route();
      refreshMe(false);
      return;
    }
    if (await refreshMe(candidate !== undefined)) route();
  }

  async function refreshMe(fresh) {
    try {
      const me = await api("me");
      if (token()) sessionStorage.setItem(ME_KEY, JSON.stringify(me));
      applyMe(me);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        sessionStorage.removeItem(ME_KEY);
        showLogin(fresh ? "That token was refused: " + err.message : state.me ? "Your token was refused (" + err.message + "). Sign in again." : "");
        return false;
      }
      if (!state.me) showLogin("");
      showError(err, "sign in");
      return false;
    }
  }

  function applyMe(me) {
    state.me = me;
    $("who").textContent = me.principal + " · reads " + (me.all_namespaces ? "every namespace" : me.namespaces.join(", ") || "nothing");
    $("nav").hidden = false;
    $("sign-out").hidden = !token();
    fillFilters(me);
  }

  function fillFilters(me) {
    const ns = $("f-namespace");
    const chosen = ns.value;
    while (ns.options.length > 1) ns.remove(1);
    for (const name of me.namespaces) ns.appendChild(el("option", { text: name }));
    ns.value = me.namespaces.includes(chosen) ? chosen : "";
    const types = $("types-list");
    clear(types);
    for (const t of me.entity_types) types.appendChild(el("option", { text: t }));
    const sources = $("sources-list");
    clear(sources);
    for (const s of me.sources) sources.appendChild(el("option", { text: s }));
  }

  // -- search -----------------------------------------------------------------------------------
  function searchParamsFromForm() {
    const p = new URLSearchParams();
    p.set("q", $("q").value.trim());
    const fields = { namespace: "f-namespace", type: "f-type", source: "f-source", as_of: "f-as-of", hops: "f-hops" };
    for (const [key, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value) p.set(key, value);
    }
    return p;
  }

  async function renderSearch(params) {
    show("search");
    const q = params.get("q");
    $("q").value = q || "";
    for (const [key, id] of Object.entries({ namespace: "f-namespace", type: "f-type", source: "f-source", as_of: "f-as-of", hops: "f-hops" })) {
      $(id).value = params.get(key) || "";
    }
    const list = $("results");
    if (!q) { clear(list); $("search-status").textContent = "Search by meaning, words and names; results say why they were chosen."; done("search-empty"); return; }
    $("search-status").textContent = "Searching…";
    try {
      const out = await api("search", params);
      clear(list);
      for (const hit of out.hits) list.appendChild(hitItem(hit));
      const extra = out.filtered_by_source ? ", " + out.filtered_by_source + " left out by the source filter" : "";
      $("search-status").textContent = out.hits.length + " results in " + Math.round(out.elapsed_ms) + " ms" + extra;
      list.dataset.query = q;
      list.dataset.params = params.toString();
      done("search");
    } catch (err) {
      $("search-status").textContent = "";
      showError(err, "search");
    }
  }

  function hitItem(hit) {
    const head = el("div", { cls: "hit-head" }, [
      el("a", { cls: "hit-name", href: "#/entity?id=" + encodeURIComponent(hit.id), text: hit.name, title: hit.id }),
      el("span", { cls: "badge", text: hit.type }),
      el("span", { cls: "score", text: "score " + hit.score.toFixed(3) }),
      hit.hop ? el("span", { cls: "badge", text: hit.hop + " hop" + (hit.hop > 1 ? "s" : "") }) : null,
      el("span", { cls: "score", text: hit.namespace + " · " + hit.source }),
    ]);
    const reasons = el("div", { cls: "reasons" }, hit.reasons.map((r) => el("span", { cls: "reason " + r.kind, text: r.text, title: r.kind })));
    const prov = hit.provenance ? provenance(hit.provenance) : el("div", { cls: "prov", text: "source " + hit.source });
    return el("li", { cls: "hit", data: { id: hit.id } }, [head, el("p", { cls: "snippet", text: hit.text.slice(0, 400) }), reasons, prov]);
  }

  function provenance(p) {
    const uri = p.uri || "";
    const web = /^https?:\/\//i.test(uri);
    const target = web ? el("a", { href: uri, text: uri }) : el("span", { text: uri });
    if (web) { target.rel = "noopener noreferrer"; target.target = "_blank"; }
    return el("div", { cls: "prov" }, ["from ", target, p.fetched_at ? " · fetched " + when(p.fetched_at) : "", p.version ? " · version " + String(p.version).slice(0, 16) : ""]);
  }

  // -- entity -----------------------------------------------------------------------------------
  async function renderEntity(id) {
    show("entity");
    state.entityId = id;
    $("entity-name").textContent = "Loading…";
    try {
      const page = await api("entity", new URLSearchParams({ id }));
      if (state.entityId !== id) return;
      fillEntity(page);
      done("entity");
      startGraph(page.id);
    } catch (err) {
      $("entity-name").textContent = "Not found";
      showError(err, "entity");
    }
  }

  function fillEntity(page) {
    $("entity-name").textContent = page.name;
    const validity = page.valid_from || page.valid_to ? " · valid " + (when(page.valid_from) || "…") + " → " + (when(page.valid_to) || "now") : "";
    clear($("entity-meta"));
    $("entity-meta").appendChild(el("span", { text: page.type + " · " + page.namespace + " · " + page.source + validity + " · " }));
    $("entity-meta").appendChild(el("code", { text: page.id }));
    if (page.provenance) $("entity-meta").appendChild(provenance(page.provenance));
    $("entity-text").textContent = page.text;
    const props = $("entity-props");
    clear(props);
    const keys = Object.keys(page.properties).sort();
    for (const k of keys) props.appendChild(row([k, typeof page.properties[k] === "string" ? page.properties[k] : JSON.stringify(page.properties[k])]));
    if (!keys.length) props.appendChild(row(["none", ""]));
    $("rel-count").textContent = page.relations.length < page.relations_total ? "(" + page.relations.length + " of " + page.relations_total + ")" : "(" + page.relations_total + ")";
    fillTable($("entity-relations"), ["relation", "", "entity", "valid in the world", "recorded in the store", "evidence"], page.relations.map((r) => {
      const tr = row([r.type, r.direction === "out" ? "→" : "←", entityLink(r.other),
        (when(r.valid_from) || "…") + " → " + (when(r.valid_to) || "now"),
        (when(r.recorded_at) || "…") + (r.expired_at ? " → expired " + when(r.expired_at) : ""), r.evidence]);
      if (!r.live) tr.classList.add("expired");
      return tr;
    }));
    $("mention-count").textContent = page.mentions.length < page.mentions_total ? "(" + page.mentions.length + " of " + page.mentions_total + ")" : "(" + page.mentions_total + ")";
    fillTable($("entity-mentions"), ["item", "type", "as written", "extractor", "source"], page.mentions.map((m) =>
      row([entityLink(m.item), m.item.type, m.text, m.extractor + (m.confidence !== null ? " (" + m.confidence.toFixed(2) + ")" : ""), m.source])));
    fillTable($("entity-merges"), ["decision", "with", "rule", "score", "evidence", "when"], page.merges.map((m) => {
      const tr = row([m.kind + (m.live ? "" : " (undone)"), entityLink(m.other), m.rule, m.score.toFixed(2), m.evidence, when(m.decided_at)]);
      if (!m.live) tr.classList.add("expired");
      return tr;
    }));
    const sources = $("entity-sources");
    clear(sources);
    for (const s of page.sources) sources.appendChild(el("li", { text: s }));
  }

  function graphView() {
    if (!state.graph) {
      state.graph = new window.AesopGraph.GraphView($("graph"), {
        onSelect: (node) => { updatePinButton(); if (!state.graph.expanded.has(node.id)) expand(node.id); },
        onOpen: (node) => { location.hash = "#/entity?id=" + encodeURIComponent(node.id); },
        onChange: (g) => { fillRelationFilters(g); fillNodeList(g); },
      });
      window.aesopGraph = state.graph;
    }
    return state.graph;
  }

  async function startGraph(id) {
    const g = graphView();
    g.clear();
    state.graphNotes.clear();
    g.resize();
    await expand(id);
  }

  async function expand(id) {
    const g = graphView();
    const params = new URLSearchParams({ id });
    const asOf = new URLSearchParams((location.hash.split("?")[1]) || "").get("as_of");
    if (asOf) params.set("as_of", asOf);
    try {
      const data = await api("graph", params);
      const center = data.nodes.find((n) => n.id === data.center);
      const name = center ? center.name : data.center;
      if (data.sampled) state.graphNotes.set(data.center, "Showing a sample of " + (data.nodes.length - 1) + " of " + (data.total_neighbours > data.counted_up_to ? "more than " + data.counted_up_to : data.total_neighbours) + " neighbours of " + name + ".");
      g.add(data);
      $("graph-note").textContent = [...state.graphNotes.values()].join(" ");
      $("graph").dataset.expanded = String(g.expanded.size);
      done("graph");
    } catch (err) {
      showError(err, "graph");
    }
  }

  function fillRelationFilters(g) {
    const box = $("rel-filters");
    clear(box);
    const types = new Set(g.relationTypes().map(([t]) => t));
    for (const t of g.hiddenTypes) types.add(t);
    for (const t of [...types].sort()) {
      const input = el("input");
      input.type = "checkbox";
      input.checked = !g.hiddenTypes.has(t);
      input.dataset.relationType = t;
      input.addEventListener("change", () => g.setTypeVisible(t, input.checked));
      box.appendChild(el("label", {}, [input, " " + t]));
    }
  }

  function fillNodeList(g) {
    const list = $("graph-nodes");
    clear(list);
    for (const n of g.visibleNodes()) {
      const b = el("button", { text: n.name, title: n.id, data: { id: n.id } });
      b.type = "button";
      b.addEventListener("click", () => { g.selected = n.id; g.draw(); updatePinButton(); if (!g.expanded.has(n.id)) expand(n.id); });
      list.appendChild(el("li", {}, [b, el("span", { cls: "badge", text: n.type })]));
    }
  }

  function updatePinButton() {
    const g = state.graph;
    const node = g && g.selected ? g.nodes.get(g.selected) : null;
    $("graph-pin").textContent = node && node.pinned ? "Unpin" : "Pin";
  }

  // -- memory -----------------------------------------------------------------------------------
  async function renderMemory(agent) {
    show("memory");
    const select = $("agent-select");
    try {
      const out = await api("agents");
      clear(select);
      for (const a of out.agents) select.appendChild(el("option", { text: a.agent_id + " (" + a.entities + ")", data: { agent: a.agent_id } }));
      [...select.options].forEach((o) => { o.value = o.dataset.agent; });
      if (!out.agents.length) { $("memory-status").textContent = "No agent memory in the namespaces you can read."; clear($("memory-sessions")); clear($("memory-lanes")); done("memory"); return; }
      const chosen = agent && out.agents.some((a) => a.agent_id === agent) ? agent : out.agents[0].agent_id;
      select.value = chosen;
      const memory = await api("memory", new URLSearchParams({ agent: chosen }));
      fillMemory(memory);
      done("memory");
    } catch (err) {
      showError(err, "memory");
    }
  }

  function fillMemory(memory) {
    const counts = {};
    for (const s of memory.sessions) for (const e of s.episodes) counts[e.status] = (counts[e.status] || 0) + 1;
    const summary = Object.entries(counts).map(([k, v]) => v + " " + k).join(", ");
    $("memory-status").textContent = memory.shown + " episodes" + (memory.shown < memory.total ? " (the newest of " + memory.total + ")" : "") + " in " + memory.sessions.length + " sessions: " + summary;
    $("memory-sessions").dataset.agent = memory.agent_id;
    const times = memory.sessions.flatMap((s) => s.episodes.map((e) => Date.parse(e.created_at))).filter((t) => !isNaN(t));
    const lo = Math.min(...times), hi = Math.max(...times);
    const lanes = $("memory-lanes");
    clear(lanes);
    const sessions = $("memory-sessions");
    clear(sessions);
    for (const s of memory.sessions) {
      const label = s.session_id || "(no session)";
      const track = el("div", { cls: "lane-track" });
      const column = el("div", { cls: "session" }, [el("h3", { text: "Session " + label })]);
      for (const e of s.episodes) {
        const card = el("div", { cls: "episode " + e.status, data: { id: e.id, status: e.status } }, [
          el("div", { cls: "when" }, [when(e.created_at) + " ", el("span", { cls: "badge " + e.status, text: e.status })]),
          el("p", { cls: "content", text: e.content }),
          e.retired_note ? el("div", { cls: "when", text: e.retired_note }) : null,
          e.mentions.length ? el("div", { cls: "mentions" }, ["mentions: "].concat(e.mentions.map(entityLink))) : null,
        ]);
        column.appendChild(card);
        const dot = el("button", { cls: "dot " + e.status, title: when(e.created_at) + " " + e.status + ": " + e.content.slice(0, 80) });
        dot.type = "button";
        const t = Date.parse(e.created_at);
        dot.style.left = (hi > lo && !isNaN(t) ? ((t - lo) / (hi - lo)) * 100 : 50) + "%";
        dot.addEventListener("click", () => { card.scrollIntoView({ block: "center" }); card.classList.add("flash"); setTimeout(() => card.classList.remove("flash"), 1200); });
        track.appendChild(dot);
      }
      lanes.appendChild(el("div", { cls: "lane" }, [el("span", { cls: "lane-label", text: label, title: label }), track]));
      sessions.appendChild(column);
    }
  }

  // -- sources ----------------------------------------------------------------------------------
  async function renderSources() {
    show("sources");
    if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
    try {
      const out = await api("sources");
      fillSources(out);
      done("sources");
      if (out.sources.some((s) => s.job && s.job.state === "running") && document.body.dataset.view === "sources") {
        state.pollTimer = setTimeout(renderSources, 1000);
      }
    } catch (err) {
      showError(err, "sources");
    }
  }

  function fillSources(out) {
    $("sources-status").textContent = out.sources.length + " sources you may see";
    fillTable($("sources-table"), ["source", "kind · namespace", "from", "items", "entities", "relations", "last sync", "quarantined", ""], out.sources.map((s) => {
      const button = el("button", { text: "Re-sync", title: s.can_resync ? "ingest this source again now" : s.resync_note, data: { source: s.name } });
      button.type = "button";
      button.disabled = !s.can_resync || (s.job && s.job.state === "running");
      button.addEventListener("click", () => resync(s.name, button));
      const job = s.job ? el("div", { cls: "when", text: "re-sync " + s.job.state + (s.job.message ? ": " + s.job.message : "") }) : null;
      const quarantine = el("div", {}, [String(s.quarantined)]);
      if (s.quarantined_items.length) {
        quarantine.appendChild(el("ul", { cls: "quarantine" }, s.quarantined_items.map((q) => el("li", { text: q.key + ": " + q.reason }))));
      }
      const last = (s.status || "no run recorded") + (s.last_ok_at ? " · ok " + when(s.last_ok_at) : "") + (s.age_seconds !== null ? " (" + Math.round(s.age_seconds / 60) + " min ago)" : "");
      return row([s.name, (s.kind || "folder/documents") + " · " + (s.namespace || "-"), s.identity || "", String(s.items), String(s.entities), String(s.relations), last, quarantine, el("div", {}, [button, job])]);
    }));
  }

  async function resync(name, button) {
    button.disabled = true;
    try {
      await api("sources/resync", null, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ source: name }) });
      renderSources();
    } catch (err) {
      button.disabled = false;
      showError(err, "re-sync");
    }
  }

  // -- wiring -----------------------------------------------------------------------------------
  function wire() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (value) signIn(value);
    });
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const target = "#/search?" + searchParamsFromForm().toString();
      if (location.hash === target) route(); else location.hash = target;
    });
    $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(ME_KEY); showLogin("Signed out."); });
    $("agent-select").addEventListener("change", () => { location.hash = "#/memory?agent=" + encodeURIComponent($("agent-select").value); });
    $("graph-pin").addEventListener("click", () => { const g = state.graph; if (g && g.selected) { g.togglePin(g.selected); updatePinButton(); } });
    $("graph-open").addEventListener("click", () => { const g = state.graph; if (g && g.selected) location.hash = "#/entity?id=" + encodeURIComponent(g.selected); });
    $("graph-png").addEventListener("click", () => { if (state.graph) state.graph.exportPNG("neighbourhood.png"); });
    $("graph-json").addEventListener("click", () => { if (state.graph) state.graph.exportJSON("neighbourhood.json"); });
    window.addEventListener("hashchange", route);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    signIn();
  });
})();
