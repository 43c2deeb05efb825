/*
 * aesoperator graph view: a small force-directed SVG renderer with no dependencies.
 *
 * GraphView._repr_html_ (aesoperator/notebook/graph_view.py) writes a container holding a
 * static SVG picture (laid out in Python) and the graph as JSON, inlines this file after it and
 * calls aesopGraphView.render(containerId). The renderer replaces the static picture with a live
 * one: the layout keeps relaxing, nodes can be dragged (and stay pinned where dropped; a double
 * click frees them), the wheel zooms, dragging the background pans, a click on a node shows its
 * details and its neighbours, the legend hides and shows entity types. Nothing is fetched from
 * the network. Entity names are untrusted text: they are only ever set with textContent.
 *
 * The layout (Simulation) is plain computation with no DOM access, so it can be tested under
 * node: require("graph_view.js").Simulation.
 */
(function (global) {
  "use strict";

  var VERSION = 1;
  var SVG_NS = "http://www.w3.org/2000/svg";

  // -- layout ----------------------------------------------------------------------------------
  function Simulation(nodes, links, width, height) {
    this.nodes = nodes; // {x, y} required; vx, vy, fx, fy optional
    this.links = links; // {s, t}: indices into nodes
    this.width = width;
    this.height = height;
    this.alpha = 1;
    this.alphaMin = 0.003;
    this.alphaDecay = 0.0228; // about 300 ticks from 1 to alphaMin
    this.velocityDecay = 0.45;
    var n = Math.max(nodes.length, 1);
    this.linkDistance = Math.max(24, Math.min(110, 0.55 * Math.sqrt((width * height) / n)));
    this.charge = 1.1 * this.linkDistance;
    this.gravity = 0.035;
    var degree = [];
    var i;
    for (i = 0; i < nodes.length; i++) {
      degree.push(0);
      var node = nodes[i];
      node.vx = node.vx || 0;
      node.vy = node.vy || 0;
      if (!isFinite(node.x) || !isFinite(node.y)) {
        // a deterministic spiral for nodes without a position
        var angle = i * 2.399963;
        var radius = 10 * Math.sqrt(i + 0.5);
        node.x = width / 2 + radius * Math.cos(angle);
        node.y = height / 2 + radius * Math.sin(angle);
      }
    }
    for (i = 0; i < links.length; i++) {
      degree[links[i].s] += 1;
      degree[links[i].t] += 1;
    }
    this.degree = degree;
  }

  Simulation.prototype.tick = function () {
    var nodes = this.nodes;
    var links = this.links;
    var alpha = this.alpha;
    var n = nodes.length;
    var i, j, a, b, dx, dy, d2, f;
    // repulsion between every pair (the graphs shown are at most a few hundred nodes)
    for (i = 0; i < n; i++) {
      a = nodes[i];
      for (j = i + 1; j < n; j++) {
        b = nodes[j];
        dx = a.x - b.x;
        dy = a.y - b.y;
        d2 = dx * dx + dy * dy;
        if (d2 < 1e-6) {
          dx = ((i * 7919 + j * 104729) % 17) / 17 - 0.5; // deterministic jitter for coincident nodes
          dy = ((i * 104729 + j * 7919) % 13) / 13 - 0.5;
          d2 = dx * dx + dy * dy + 1e-6;
        }
        if (d2 < 1) d2 = 1;
        f = (this.charge * alpha) / d2;
        a.vx += dx * f;
        a.vy += dy * f;
        b.vx -= dx * f;
        b.vy -= dy * f;
      }
    }
    // springs along the links
    var degree = this.degree;
    for (i = 0; i < links.length; i++) {
      a = nodes[links[i].s];
      b = nodes[links[i].t];
      if (a === b) continue;
      dx = b.x + b.vx - a.x - a.vx;
      dy = b.y + b.vy - a.y - a.vy;
      var d = Math.sqrt(dx * dx + dy * dy) || 1e-3;
      var strength = 1 / Math.max(1, Math.min(degree[links[i].s], degree[links[i].t]));
      f = ((d - this.linkDistance) / d) * alpha * strength;
      var bias = degree[links[i].s] / (degree[links[i].s] + degree[links[i].t] || 1);
      b.vx -= dx * f * bias;
      b.vy -= dy * f * bias;
      a.vx += dx * f * (1 - bias);
      a.vy += dy * f * (1 - bias);
    }
    // a weak pull to the centre keeps separate components in view
    var cx = this.width / 2;
    var cy = this.height / 2;
    for (i = 0; i < n; i++) {
      a = nodes[i];
      a.vx += (cx - a.x) * this.gravity * alpha;
      a.vy += (cy - a.y) * this.gravity * alpha;
      if (a.fx !== undefined && a.fx !== null) {
        a.x = a.fx;
        a.y = a.fy;
        a.vx = 0;
        a.vy = 0;
      } else {
        a.vx *= 1 - this.velocityDecay;
        a.vy *= 1 - this.velocityDecay;
        a.x += a.vx;
        a.y += a.vy;
      }
    }
    this.alpha += (0 - this.alpha) * this.alphaDecay;
  };

  Simulation.prototype.running = function () {
    return this.alpha >= this.alphaMin;
  };

  Simulation.prototype.reheat = function (alpha) {
    if (this.alpha < alpha) this.alpha = alpha;
  };

  /** Tick until the layout settles (or `most` ticks); returns the number of ticks run. */
  Simulation.prototype.run = function (most) {
    var ticks = 0;
    while (this.running() && ticks < most) {
      this.tick();
      ticks += 1;
    }
    return ticks;
  };

  // -- rendering -------------------------------------------------------------------------------
  function svgElement(name, attrs) {
    var el = document.createElementNS(SVG_NS, name);
    for (var key in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, key)) el.setAttribute(key, String(attrs[key]));
    }
    return el;
  }

  function htmlElement(name, style, text) {
    var el = document.createElement(name);
    if (style) el.setAttribute("style", style);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function render(containerId, attempt) {
    var root = document.getElementById(containerId);
    if (!root) {
      // the output may not be attached to the page yet: try again shortly
      if ((attempt || 0) < 50) {
        setTimeout(function () {
          render(containerId, (attempt || 0) + 1);
        }, 100);
      }
      return;
    }
    if (root.getAttribute("data-aesop-rendered") === "1") return;
    var source = root.querySelector("script.aesop-gv-data");
    var canvas = root.querySelector(".aesop-gv-canvas");
    var legendBox = root.querySelector(".aesop-gv-legend");
    if (!source || !canvas) return;
    var data = JSON.parse(source.textContent);
    root.setAttribute("data-aesop-rendered", "1");

    var width = data.width;
    var height = data.height;
    var nodes = data.nodes.map(function (n) {
      return { x: n.x, y: n.y, data: n };
    });
    var links = data.links;
    var sim = new Simulation(nodes, links, width, height);
    sim.alpha = data.alpha || 0.25; // the Python layout is already close: relax it gently

    // neighbours, for highlighting
    var adjacent = nodes.map(function () {
      return {};
    });
    links.forEach(function (l) {
      adjacent[l.s][l.t] = true;
      adjacent[l.t][l.s] = true;
    });

    clear(canvas);
    var svg = svgElement("svg", {
      viewBox: "0 0 " + width + " " + height,
      width: "100%",
      height: height,
      class: "aesop-gv-svg",
      style: "touch-action:none;user-select:none;cursor:grab;background:#fcfcfc;border:1px solid #e3e3e3;border-radius:4px"
    });
    var defs = svgElement("defs", {});
    var arrowId = containerId + "-arrow";
    var marker = svgElement("marker", {
      id: arrowId,
      viewBox: "0 -4 8 8",
      refX: 8,
      refY: 0,
      markerWidth: 7,
      markerHeight: 7,
      orient: "auto"
    });
    marker.appendChild(svgElement("path", { d: "M0,-4L8,0L0,4", fill: "#9a9a9a" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    var viewport = svgElement("g", {});
    var linkLayer = svgElement("g", { stroke: "#b5b5b5", "stroke-width": 1.1 });
    var nodeLayer = svgElement("g", {});
    var labelLayer = svgElement("g", {
      "font-family": "sans-serif",
      "font-size": 10,
      fill: "#222",
      "pointer-events": "none"
    });
    viewport.appendChild(linkLayer);
    viewport.appendChild(nodeLayer);
    viewport.appendChild(labelLayer);
    svg.appendChild(viewport);
    canvas.appendChild(svg);

    var info = htmlElement(
      "div",
      "font:12px sans-serif;color:#333;min-height:1.4em;margin-top:4px;white-space:pre-wrap;word-break:break-all",
      "Click a node for its details; drag to move it, double-click to free it; wheel to zoom."
    );
    canvas.appendChild(info);

    var linkEls = links.map(function (l) {
      var line = svgElement("line", {});
      if (data.directed) line.setAttribute("marker-end", "url(#" + arrowId + ")");
      var title = svgElement("title", {});
      title.textContent = l.title;
      line.appendChild(title);
      linkLayer.appendChild(line);
      return line;
    });
    var nodeEls = nodes.map(function (node, index) {
      var n = node.data;
      var circle = svgElement("circle", {
        r: n.r,
        fill: n.color,
        stroke: n.highlight ? "#111" : "#fff",
        "stroke-width": n.highlight ? 2.2 : 1,
        style: "cursor:pointer"
      });
      var title = svgElement("title", {});
      title.textContent = n.title;
      circle.appendChild(title);
      circle.setAttribute("data-index", String(index));
      nodeLayer.appendChild(circle);
      return circle;
    });
    var labelEls = nodes.map(function (node) {
      if (!node.data.label) return null;
      var text = svgElement("text", {
        dx: node.data.r + 3,
        dy: "0.35em",
        stroke: "#fff",
        "stroke-width": 3,
        "paint-order": "stroke"
      });
      text.textContent = node.data.label;
      labelLayer.appendChild(text);
      return text;
    });

    // -- visibility: the legend hides and shows groups (entity types, unless coloured otherwise)
    var hiddenGroups = {};
    function visible(index) {
      return !hiddenGroups[nodes[index].data.group];
    }

    var selected = -1;
    function restyle() {
      nodes.forEach(function (node, i) {
        var show = visible(i);
        var near = selected < 0 || i === selected || adjacent[selected][i];
        nodeEls[i].style.display = show ? "" : "none";
        nodeEls[i].setAttribute("opacity", near ? 1 : 0.18);
        if (labelEls[i]) {
          labelEls[i].style.display = show ? "" : "none";
          labelEls[i].setAttribute("opacity", near ? 1 : 0.15);
        }
      });
      links.forEach(function (l, i) {
        var show = visible(l.s) && visible(l.t);
        var near = selected < 0 || l.s === selected || l.t === selected;
        linkEls[i].style.display = show ? "" : "none";
        linkEls[i].setAttribute("opacity", near ? 1 : 0.1);
      });
    }

    function describe(index) {
      var n = nodes[index].data;
      var around = Object.keys(adjacent[index]).map(function (k) {
        return nodes[+k].data.name;
      });
      var more = around.length > 12 ? " … and " + (around.length - 12) + " more" : "";
      return (
        n.name + "  [" + n.type + "]\n" + n.id +
        (around.length ? "\nlinked to: " + around.slice(0, 12).join(", ") + more : "")
      );
    }

    if (legendBox) {
      clear(legendBox);
      data.legend.forEach(function (entry) {
        var item = htmlElement(
          "span",
          "display:inline-flex;align-items:center;margin:2px 10px 2px 0;cursor:pointer;font:12px sans-serif",
          undefined
        );
        var swatch = htmlElement(
          "span",
          "display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;background:" + entry.color,
          undefined
        );
        item.appendChild(swatch);
        item.appendChild(document.createTextNode(entry.group + " (" + entry.count + ")"));
        item.title = "show or hide " + (data.legend_title || "type") + " " + entry.group;
        item.addEventListener("click", function () {
          hiddenGroups[entry.group] = !hiddenGroups[entry.group];
          item.style.opacity = hiddenGroups[entry.group] ? 0.35 : 1;
          restyle();
        });
        legendBox.appendChild(item);
      });
    }

    // -- view transform: zoom and pan
    var view = { k: 1, x: 0, y: 0 };
    function applyView() {
      viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
    }
    function svgPoint(event) {
      var matrix = svg.getScreenCTM ? svg.getScreenCTM() : null;
      if (!matrix || !svg.createSVGPoint) {
        // no SVG geometry (a minimal DOM): scale from the element's box instead
        var box = svg.getBoundingClientRect();
        return {
          x: box.width ? ((event.clientX - box.left) * width) / box.width : event.clientX,
          y: box.height ? ((event.clientY - box.top) * height) / box.height : event.clientY
        };
      }
      var pt = svg.createSVGPoint();
      pt.x = event.clientX;
      pt.y = event.clientY;
      var p = pt.matrixTransform(matrix.inverse());
      return { x: p.x, y: p.y };
    }
    function graphPoint(event) {
      var p = svgPoint(event);
      return { x: (p.x - view.x) / view.k, y: (p.y - view.y) / view.k };
    }
    var viewTouched = false; // once the reader zooms, pans or drags, the view is theirs
    function fit(most) {
      var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
      nodes.forEach(function (node, i) {
        if (!visible(i)) return;
        minX = Math.min(minX, node.x - node.data.r);
        minY = Math.min(minY, node.y - node.data.r);
        maxX = Math.max(maxX, node.x + node.data.r);
        maxY = Math.max(maxY, node.y + node.data.r);
      });
      if (!isFinite(minX)) return;
      var pad = 24;
      var k = Math.min(
        (width - 2 * pad) / Math.max(maxX - minX, 1),
        (height - 2 * pad) / Math.max(maxY - minY, 1),
        typeof most === "number" ? most : 2.5
      );
      view.k = k;
      view.x = width / 2 - k * (minX + maxX) / 2;
      view.y = height / 2 - k * (minY + maxY) / 2;
      applyView();
    }

    svg.addEventListener(
      "wheel",
      function (event) {
        event.preventDefault();
        viewTouched = true;
        var p = svgPoint(event);
        var factor = Math.exp(-event.deltaY * 0.0015);
        var k = Math.max(0.1, Math.min(8, view.k * factor));
        view.x = p.x - ((p.x - view.x) * k) / view.k;
        view.y = p.y - ((p.y - view.y) * k) / view.k;
        view.k = k;
        applyView();
      },
      { passive: false }
    );

    var drag = null; // {kind: "node" | "pan", ...}
    svg.addEventListener("pointerdown", function (event) {
      var target = event.target;
      var index = target && target.getAttribute ? target.getAttribute("data-index") : null;
      if (index !== null && index !== undefined) {
        var node = nodes[+index];
        var p = graphPoint(event);
        drag = { kind: "node", index: +index, dx: node.x - p.x, dy: node.y - p.y, moved: false };
        node.fx = node.x;
        node.fy = node.y;
      } else {
        var s = svgPoint(event);
        drag = { kind: "pan", x: s.x - view.x, y: s.y - view.y, moved: false };
        svg.style.cursor = "grabbing";
      }
      if (svg.setPointerCapture) svg.setPointerCapture(event.pointerId);
    });
    svg.addEventListener("pointermove", function (event) {
      if (!drag) return;
      drag.moved = true;
      viewTouched = true;
      if (drag.kind === "node") {
        var p = graphPoint(event);
        var node = nodes[drag.index];
        node.fx = p.x + drag.dx;
        node.fy = p.y + drag.dy;
        sim.reheat(0.2);
        start();
      } else {
        var s = svgPoint(event);
        view.x = s.x - drag.x;
        view.y = s.y - drag.y;
        applyView();
      }
    });
    function endDrag(event) {
      if (!drag) return;
      if (drag.kind === "node" && !drag.moved) {
        selected = selected === drag.index ? -1 : drag.index;
        info.textContent = selected < 0 ? "" : describe(selected);
        restyle();
      } else if (drag.kind === "pan" && !drag.moved && selected >= 0) {
        selected = -1;
        info.textContent = "";
        restyle();
      }
      if (drag.kind === "node" && !drag.moved) {
        // a click pins nothing
        var node = nodes[drag.index];
        if (!node.pinned) {
          node.fx = null;
          node.fy = null;
        }
      } else if (drag.kind === "node") {
        nodes[drag.index].pinned = true;
      }
      drag = null;
      svg.style.cursor = "grab";
      if (svg.releasePointerCapture && event && event.pointerId !== undefined) {
        try {
          svg.releasePointerCapture(event.pointerId);
        } catch (e) {
          /* already released */
        }
      }
    }
    svg.addEventListener("pointerup", endDrag);
    svg.addEventListener("pointercancel", endDrag);
    svg.addEventListener("dblclick", function (event) {
      var index = event.target && event.target.getAttribute ? event.target.getAttribute("data-index") : null;
      if (index === null || index === undefined) {
        fit();
        return;
      }
      var node = nodes[+index];
      node.pinned = false;
      node.fx = null;
      node.fy = null;
      sim.reheat(0.15);
      start();
    });

    // -- drawing
    function draw() {
      links.forEach(function (l, i) {
        var a = nodes[l.s];
        var b = nodes[l.t];
        var dx = b.x - a.x;
        var dy = b.y - a.y;
        var d = Math.sqrt(dx * dx + dy * dy) || 1;
        var end = data.directed ? b.data.r + 1.5 : 0;
        var line = linkEls[i];
        line.setAttribute("x1", a.x.toFixed(1));
        line.setAttribute("y1", a.y.toFixed(1));
        line.setAttribute("x2", (b.x - (dx / d) * end).toFixed(1));
        line.setAttribute("y2", (b.y - (dy / d) * end).toFixed(1));
      });
      nodes.forEach(function (node, i) {
        nodeEls[i].setAttribute("cx", node.x.toFixed(1));
        nodeEls[i].setAttribute("cy", node.y.toFixed(1));
        if (labelEls[i]) {
          labelEls[i].setAttribute("x", node.x.toFixed(1));
          labelEls[i].setAttribute("y", node.y.toFixed(1));
        }
      });
    }

    var frame = null;
    var perFrame = nodes.length > 250 ? 1 : 2;
    function loop() {
      frame = null;
      for (var i = 0; i < perFrame && sim.running(); i++) sim.tick();
      draw();
      if (sim.running()) {
        frame = requestAnimationFrame(loop);
      } else if (!viewTouched) {
        fit(1); // the settled layout may have grown past the edges: zoom out to show it all
      }
    }
    function start() {
      if (frame === null) frame = requestAnimationFrame(loop);
    }

    var toolbar = htmlElement("div", "font:12px sans-serif;margin:2px 0", undefined);
    function button(label, title, action) {
      var b = htmlElement(
        "button",
        "font:12px sans-serif;margin-right:6px;padding:1px 8px;cursor:pointer",
        label
      );
      b.title = title;
      b.type = "button";
      b.addEventListener("click", action);
      toolbar.appendChild(b);
    }
    button("fit", "zoom to show every visible node", function () {
      fit();
    });
    button("relax", "run the layout again", function () {
      sim.reheat(0.6);
      start();
    });
    button("free all", "unpin every dragged node", function () {
      nodes.forEach(function (node) {
        node.pinned = false;
        node.fx = null;
        node.fy = null;
      });
      sim.reheat(0.3);
      start();
    });
    canvas.insertBefore(toolbar, svg);

    applyView();
    draw();
    restyle();
    start();
  }

  var api = { version: VERSION, Simulation: Simulation, render: render };
  if (typeof module === "object" && module && module.exports) module.exports = api;
  if (global && (!global.aesopGraphView || (global.aesopGraphView.version || 0) < VERSION)) {
    global.aesopGraphView = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : typeof window !== "undefined" ? window : this);
