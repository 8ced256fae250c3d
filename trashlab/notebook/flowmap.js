// trashlab FlowMap: draws the display list the kernel sends (boxes, texts, arrows) as SVG, updated in place.
// An anywidget ES module: no lab extension, no build step. Elements are keyed by id, so a refresh moves,
// recolours or relabels what exists, adds what is new (fading in) and removes what is gone (fading out).
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function make(item) {
  const g = el("g", { "data-id": item.id, class: "fm-item " + (item.cls || "") });
  if (item.kind === "box") {
    g.appendChild(el("rect"));
    if (item.stripe) g.appendChild(el("rect", { class: "fm-stripe" }));
  } else if (item.kind === "text") {
    g.appendChild(el("text"));
  } else if (item.kind === "path") {
    g.appendChild(el("path", { fill: "none" }));
  }
  return g;
}

function update(g, item) {
  g.setAttribute("class", "fm-item " + (item.cls || ""));
  if (item.kind === "box") {
    g.style.transform = `translate(${item.x}px, ${item.y}px)`;
    const r = g.firstChild;
    r.setAttribute("width", item.w);
    r.setAttribute("height", item.h);
    r.setAttribute("rx", item.r ?? 6);
    r.setAttribute("fill", item.fill);
    r.setAttribute("stroke", item.stroke);
    r.setAttribute("stroke-width", item.sw);
    if (item.dash) r.setAttribute("stroke-dasharray", item.dash); else r.removeAttribute("stroke-dasharray");
    const s = g.querySelector(".fm-stripe");
    if (s) { s.setAttribute("width", 5); s.setAttribute("height", item.h); s.setAttribute("fill", item.stripe); }
  } else if (item.kind === "text") {
    g.style.transform = `translate(${item.x}px, ${item.y}px)`;
    const t = g.firstChild;
    t.textContent = item.text;
    t.setAttribute("font-size", item.size ?? 13);
    t.setAttribute("fill", item.fill ?? "#222");
    t.setAttribute("font-weight", item.bold ? "bold" : "normal");
  } else if (item.kind === "path") {
    const p = g.firstChild;
    p.setAttribute("d", item.d);
    p.setAttribute("stroke", item.stroke);
    p.setAttribute("stroke-width", item.sw);
    if (item.arrow) p.setAttribute("marker-end", "url(#fm-arrow)");
    if (item.dash) p.setAttribute("stroke-dasharray", item.dash);
    if (item.rate !== undefined) {
      // dots travel along a busy arrow: faster for more messages per second
      const moving = item.rate > 0;
      g.classList.toggle("fm-moving", moving);
      if (moving) p.style.animationDuration = `${Math.max(0.25, 2.5 / Math.log10(10 + item.rate))}s`;
    }
  }
}

function render({ model, el: host }) {
  const root = document.createElement("div");
  root.className = "trashlab-flowmap";
  const bar = document.createElement("div");
  bar.className = "fm-bar";
  const pause = document.createElement("button");
  const stop = document.createElement("button");
  stop.textContent = "■ Stop";
  stop.title = "stop the map for good (a still picture stays)";
  const title = document.createElement("span");
  title.className = "fm-title";
  bar.append(pause, stop, title);
  const svg = el("svg", { class: "fm-svg" });
  const defs = el("defs");
  const marker = el("marker", { id: "fm-arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 10,
                                markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "context-stroke" }));
  defs.appendChild(marker);
  const layers = { path: el("g"), box: el("g"), text: el("g") };
  svg.append(defs, layers.path, layers.box, layers.text);
  root.append(bar, svg);
  host.appendChild(root);
  const shown = new Map();

  function draw() {
    const pic = model.get("picture") || { width: 600, height: 60, items: [] };
    svg.setAttribute("width", pic.width);
    svg.setAttribute("height", pic.height);
    svg.setAttribute("viewBox", `0 0 ${pic.width} ${pic.height}`);
    const keep = new Set();
    for (const item of pic.items || []) {
      keep.add(item.id);
      let g = shown.get(item.id);
      if (!g || g.dataset.kind !== item.kind) {
        if (g) g.remove();
        g = make(item);
        g.dataset.kind = item.kind;
        g.classList.add("fm-new");
        layers[item.kind].appendChild(g);
        shown.set(item.id, g);
        update(g, item);
        requestAnimationFrame(() => requestAnimationFrame(() => g.classList.remove("fm-new")));
      } else {
        update(g, item);
      }
    }
    for (const [id, g] of shown) {
      if (!keep.has(id)) {
        shown.delete(id);
        g.classList.add("fm-gone");
        setTimeout(() => g.remove(), 600);
      }
    }
  }

  function bar_state() {
    const state = model.get("state");
    title.textContent = model.get("title");
    pause.textContent = state === "paused" ? "▶ Resume" : "❚❚ Pause";
    pause.title = state === "paused" ? "redraw again" : "stop redrawing for now";
    pause.disabled = stop.disabled = state === "stopped";
    root.dataset.state = state;
  }

  pause.addEventListener("click", () => model.send({ action: model.get("state") === "paused" ? "resume" : "pause" }));
  stop.addEventListener("click", () => model.send({ action: "stop" }));
  model.on("change:picture", draw);
  model.on("change:title", bar_state);
  model.on("change:state", bar_state);
  draw();
  bar_state();
  return () => {
    model.off("change:picture", draw);
    model.off("change:title", bar_state);
    model.off("change:state", bar_state);
  };
}

export default { render };
