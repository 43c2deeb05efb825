// A small force-directed graph on a canvas: nodes and edges merged in as neighbourhoods are
// expanded, drag to move (a dragged node stays pinned), wheel to zoom, background drag to pan,
// relation types shown or hidden, PNG and JSON export. Names are drawn with fillText, so no
// ingested text ever becomes markup. No third-party code.
"use strict";

(function () {
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C564B", "#9467BD", "#17BECF", "#BCBD22", "#7F7F7F", "#F0E442"];
  const LABEL_CHARS = 26;

  function colourOf(type) {
    let h = 0;
    for (let i = 0; i < type.length; i++) h = (h * 31 + type.charCodeAt(i)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function shorten(text) {
    const flat = String(text).replace(/\s+/g, " ").trim();
    return flat.length <= LABEL_CHARS ? flat : flat.slice(0, LABEL_CHARS - 1) + "…";
  }

  class GraphView {
    constructor(canvas, handlers) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.handlers = handlers || {};
      this.nodes = new Map();
      this.edges = new Map();
      this.hiddenTypes = new Set();
      this.expanded = new Set();
      this.selected = null;
      this.view = { x: 0, y: 0, scale: 1 };
      this.alpha = 0;
      this.drag = null;
      this.frame = null;
      this.userMoved = false;
      this._bind();
      this.resize();
    }

    clear() {
      this.nodes.clear();
      this.edges.clear();
      this.expanded.clear();
      this.hiddenTypes.clear();
      this.selected = null;
      this.view = { x: 0, y: 0, scale: 1 };
      this.userMoved = false;
      this._changed();
    }

    // Zoom and pan so every visible node is in view (until the user pans or zooms).
    fit() {
      const nodes = this.visibleNodes();
      if (!nodes.length) return;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of nodes) { x0 = Math.min(x0, n.x); y0 = Math.min(y0, n.y); x1 = Math.max(x1, n.x); y1 = Math.max(y1, n.y); }
      const w = Math.max(1, x1 - x0), h = Math.max(1, y1 - y0);
      this.view.scale = Math.max(0.2, Math.min(1.6, (this.size.w - 220) / w, (this.size.h - 60) / h));
      this.view.x = -(x0 + x1) / 2 - 40 / this.view.scale;
      this.view.y = -(y0 + y1) / 2;
    }

    // Merge a neighbourhood (the API's `nodes`, `edges`, `center`) around its center.
    add(data) {
      const center = this.nodes.get(data.center);
      const cx = center ? center.x : 0;
      const cy = center ? center.y : 0;
      const fresh = data.nodes.filter((n) => !this.nodes.has(n.id));
      fresh.forEach((n, i) => {
        const angle = (2 * Math.PI * i) / Math.max(1, fresh.length);
        const radius = n.id === data.center ? 0 : 80 + 40 * Math.random();
        this.nodes.set(n.id, {
          id: n.id, name: n.name, type: n.type, namespace: n.namespace,
          x: cx + radius * Math.cos(angle), y: cy + radius * Math.sin(angle), vx: 0, vy: 0, pinned: false,
        });
      });
      for (const e of data.edges) this.edges.set(e.id, { id: e.id, type: e.type, src: e.src, dst: e.dst, valid_from: e.valid_from, valid_to: e.valid_to });
      this.expanded.add(data.center);
      if (!this.selected) this.selected = data.center;
      this.alpha = 1;
      this._changed();
      this.draw();
      this._start();
    }

    relationTypes() {
      const counts = new Map();
      for (const e of this.edges.values()) counts.set(e.type, (counts.get(e.type) || 0) + 1);
      return [...counts.entries()].sort((a, b) => b[1] - a[1]);
    }

    setTypeVisible(type, visible) {
      if (visible) this.hiddenTypes.delete(type); else this.hiddenTypes.add(type);
      this._changed();
      this.draw();
    }

    togglePin(id) {
      const n = this.nodes.get(id);
      if (!n) return false;
      n.pinned = !n.pinned;
      this.alpha = Math.max(this.alpha, 0.3);
      this._start();
      this.draw();
      return n.pinned;
    }

    visibleEdges() {
      return [...this.edges.values()].filter((e) => !this.hiddenTypes.has(e.type) && this.nodes.has(e.src) && this.nodes.has(e.dst));
    }

    visibleNodes() {
      const edges = this.visibleEdges();
      const linked = new Set(this.expanded);
      for (const e of edges) { linked.add(e.src); linked.add(e.dst); }
      return [...this.nodes.values()].filter((n) => linked.has(n.id));
    }

    toJSON() {
      const nodes = this.visibleNodes().map((n) => ({ id: n.id, name: n.name, type: n.type, namespace: n.namespace, pinned: n.pinned, x: Math.round(n.x), y: Math.round(n.y) }));
      const edges = this.visibleEdges().map((e) => ({ id: e.id, type: e.type, src: e.src, dst: e.dst, valid_from: e.valid_from, valid_to: e.valid_to }));
      return { nodes, edges };
    }

    exportJSON(filename) {
      const blob = new Blob([JSON.stringify(this.toJSON(), null, 2)], { type: "application/json" });
      download(blob, filename);
    }

    exportPNG(filename) {
      this.draw();
      this.canvas.toBlob((blob) => { if (blob) download(blob, filename); }, "image/png");
    }

    // Where a node is drawn, in CSS pixels from the canvas's top left (for tests and tooling).
    screenPosition(id) {
      const n = this.nodes.get(id);
      if (!n) return null;
      const p = this._toScreen(n.x, n.y);
      return { x: p.x, y: p.y };
    }

    // -- layout -------------------------------------------------------------------------------
    _start() {
      if (this.frame === null) this.frame = requestAnimationFrame(() => this._tick());
    }

    _tick() {
      this.frame = null;
      this._step();
      if (!this.userMoved && !this.drag) this.fit();
      this.draw();
      if (this.alpha > 0.02 || this.drag) this._start();
      else this.canvas.dataset.settled = "true";
    }

    _step() {
      const nodes = this.visibleNodes();
      const edges = this.visibleEdges();
      const k = this.alpha;
      this.canvas.dataset.settled = "false";
      for (let i = 0; i < nodes.length; i++) {
        const a = nodes[i];
        for (let j = i + 1; j < nodes.length; j++) {
          const b = nodes[j];
          let dx = a.x - b.x, dy = a.y - b.y;
          let d2 = dx * dx + dy * dy;
          if (d2 < 0.01) { dx = Math.random() - 0.5; dy = Math.random() - 0.5; d2 = 0.5; }
          if (d2 > 250000) continue;
          const f = (1800 / d2) * k;
          a.vx += dx * f; a.vy += dy * f; b.vx -= dx * f; b.vy -= dy * f;
        }
      }
      for (const e of edges) {
        const a = this.nodes.get(e.src), b = this.nodes.get(e.dst);
        const dx = b.x - a.x, dy = b.y - a.y;
        const d = Math.sqrt(dx * dx + dy * dy) || 1;
        const f = ((d - 90) / d) * 0.05 * k;
        a.vx += dx * f; a.vy += dy * f; b.vx -= dx * f; b.vy -= dy * f;
      }
      for (const n of nodes) {
        if (n.pinned || (this.drag && this.drag.node === n)) { n.vx = 0; n.vy = 0; continue; }
        n.vx = (n.vx - n.x * 0.002 * k) * 0.6;
        n.vy = (n.vy - n.y * 0.002 * k) * 0.6;
        n.x += Math.max(-30, Math.min(30, n.vx));
        n.y += Math.max(-30, Math.min(30, n.vy));
      }
      this.alpha *= 0.97;
    }

    // -- drawing ------------------------------------------------------------------------------
    resize() {
      const ratio = window.devicePixelRatio || 1;
      const rect = this.canvas.getBoundingClientRect();
      const w = Math.max(300, Math.round(rect.width || this.canvas.width));
      const h = Math.max(200, Math.round(rect.height || this.canvas.height));
      this.canvas.width = Math.round(w * ratio);
      this.canvas.height = Math.round(h * ratio);
      this.size = { w, h, ratio };
      this.draw();
    }

    _toScreen(x, y) {
      return { x: this.size.w / 2 + (x + this.view.x) * this.view.scale, y: this.size.h / 2 + (y + this.view.y) * this.view.scale };
    }

    _toWorld(sx, sy) {
      return { x: (sx - this.size.w / 2) / this.view.scale - this.view.x, y: (sy - this.size.h / 2) / this.view.scale - this.view.y };
    }

    draw() {
      const { ctx } = this;
      const { w, h, ratio } = this.size;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, w, h);
      const nodes = this.visibleNodes();
      ctx.lineWidth = 1;
      ctx.font = "11px system-ui, sans-serif";
      for (const e of this.visibleEdges()) {
        const a = this._toScreen(this.nodes.get(e.src).x, this.nodes.get(e.src).y);
        const b = this._toScreen(this.nodes.get(e.dst).x, this.nodes.get(e.dst).y);
        ctx.strokeStyle = e.valid_to ? "#d6c3a5" : "#b8c0c8";
        ctx.beginPath(); ctx.moveTo(a.x, a.y); ctx.lineTo(b.x, b.y); ctx.stroke();
        const ang = Math.atan2(b.y - a.y, b.x - a.x);
        const tip = { x: b.x - Math.cos(ang) * 9, y: b.y - Math.sin(ang) * 9 };
        ctx.fillStyle = "#9aa5b0";
        ctx.beginPath();
        ctx.moveTo(tip.x, tip.y);
        ctx.lineTo(tip.x - Math.cos(ang - 0.4) * 7, tip.y - Math.sin(ang - 0.4) * 7);
        ctx.lineTo(tip.x - Math.cos(ang + 0.4) * 7, tip.y - Math.sin(ang + 0.4) * 7);
        ctx.fill();
        if (this.view.scale > 0.8 && this.edges.size < 150) {
          ctx.fillStyle = "#8a949e";
          ctx.fillText(e.type, (a.x + b.x) / 2 + 3, (a.y + b.y) / 2 - 3);
        }
      }
      for (const n of nodes) {
        const p = this._toScreen(n.x, n.y);
        const r = this.expanded.has(n.id) ? 9 : 6;
        ctx.fillStyle = colourOf(n.type);
        ctx.beginPath(); ctx.arc(p.x, p.y, r, 0, 2 * Math.PI); ctx.fill();
        if (n.pinned) { ctx.strokeStyle = "#111"; ctx.lineWidth = 2; ctx.stroke(); ctx.lineWidth = 1; }
        if (n.id === this.selected) { ctx.strokeStyle = "#0b62a4"; ctx.lineWidth = 3; ctx.beginPath(); ctx.arc(p.x, p.y, r + 4, 0, 2 * Math.PI); ctx.stroke(); ctx.lineWidth = 1; }
        ctx.fillStyle = "#1d232a";
        ctx.fillText(shorten(n.name), p.x + r + 3, p.y + 4);
      }
      this.canvas.dataset.nodes = String(nodes.length);
      this.canvas.dataset.edges = String(this.visibleEdges().length);
    }

    _changed() {
      if (this.handlers.onChange) this.handlers.onChange(this);
    }

    // -- interaction --------------------------------------------------------------------------
    _nodeAt(sx, sy) {
      let best = null, bestD = 14 * 14;
      for (const n of this.visibleNodes()) {
        const p = this._toScreen(n.x, n.y);
        const d = (p.x - sx) ** 2 + (p.y - sy) ** 2;
        if (d < bestD) { best = n; bestD = d; }
      }
      return best;
    }

    _point(event) {
      const rect = this.canvas.getBoundingClientRect();
      return { x: event.clientX - rect.left, y: event.clientY - rect.top };
    }

    _bind() {
      const c = this.canvas;
      c.addEventListener("mousedown", (ev) => {
        const p = this._point(ev);
        const node = this._nodeAt(p.x, p.y);
        this.drag = { node, start: p, moved: false, view: { ...this.view } };
      });
      window.addEventListener("mousemove", (ev) => {
        if (!this.drag) return;
        const p = this._point(ev);
        const dx = p.x - this.drag.start.x, dy = p.y - this.drag.start.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) this.drag.moved = true;
        if (!this.drag.moved) return;
        if (this.drag.node) {
          const wpt = this._toWorld(p.x, p.y);
          this.drag.node.x = wpt.x; this.drag.node.y = wpt.y; this.drag.node.pinned = true;
          this.alpha = Math.max(this.alpha, 0.2);
          this._start();
        } else {
          this.userMoved = true;
          this.view.x = this.drag.view.x + dx / this.view.scale;
          this.view.y = this.drag.view.y + dy / this.view.scale;
          this.draw();
        }
      });
      window.addEventListener("mouseup", () => {
        const drag = this.drag;
        this.drag = null;
        if (drag && !drag.moved && drag.node) {
          this.selected = drag.node.id;
          this.draw();
          if (this.handlers.onSelect) this.handlers.onSelect(drag.node);
        }
      });
      c.addEventListener("dblclick", (ev) => {
        const p = this._point(ev);
        const node = this._nodeAt(p.x, p.y);
        if (node && this.handlers.onOpen) this.handlers.onOpen(node);
      });
      c.addEventListener("wheel", (ev) => {
        ev.preventDefault();
        const factor = ev.deltaY < 0 ? 1.1 : 1 / 1.1;
        this.userMoved = true;
        this.view.scale = Math.max(0.2, Math.min(4, this.view.scale * factor));
        this.draw();
      }, { passive: false });
      window.addEventListener("resize", () => this.resize());
    }
  }

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  window.AesopGraph = { GraphView, colourOf };
})();
