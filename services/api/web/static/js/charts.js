// Charts drawn as SVG by our own code: line charts (learning curves, regression outputs),
// a labelled heat map (confusion matrix) and bars (predicted classes). Each chart is an
// <svg role="img"> with a text alternative, so it reads without the picture.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1d4ed8", "#c2410c", "#15803d", "#7c3aed", "#be123c", "#0e7490", "#a16207", "#4d7c0f", "#9d174d", "#374151"];

function s(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const step = [1, 2, 2.5, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((v) => v >= raw);
  const ticks = [];
  // From the step at or below lo to the first at or above hi: every value lies inside the axis.
  for (let v = Math.floor(lo / step) * step; ; v += step) {
    ticks.push(Number(v.toPrecision(12)));
    if (v >= hi - step * 1e-9 || ticks.length > 50) break;
  }
  return ticks;
}

const tickText = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : String(Number(v.toPrecision(4))));

/**
 * series: [{name, values: [number|null], color, dashed}] over x = 1..n (epochs or samples).
 * Returns <figure> holding the svg and a legend.
 */
export function lineChart(title, series, { xLabel = "epoch", width = 560, height = 260 } = {}) {
  const pad = { l: 52, r: 12, t: 10, b: 36 };
  const values = series.flatMap((x) => x.values).filter((v) => typeof v === "number" && Number.isFinite(v));
  const n = Math.max(1, ...series.map((x) => x.values.length));
  const lo = values.length ? Math.min(...values) : 0;
  const hi = values.length ? Math.max(...values) : 1;
  const ticks = niceTicks(lo, hi === lo ? lo + 1 : hi);
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const X = (i) => pad.l + (n === 1 ? 0.5 : i / (n - 1)) * (width - pad.l - pad.r);
  const Y = (v) => height - pad.b - ((v - y0) / (y1 - y0 || 1)) * (height - pad.t - pad.b);
  const points = series.reduce((sum, x) => sum + x.values.length, 0);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "data-points": points,
    "aria-label": `${title}: ${series.map((x) => `${x.name} ${x.values.length ? tickText(x.values[x.values.length - 1] ?? NaN) : "no value"} after ${x.values.length} ${xLabel}s`).join("; ")}` });
  for (const t of ticks) {
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t), stroke: "#d9e2ec" }));
    svg.append(s("text", { x: pad.l - 6, y: Y(t) + 4, "text-anchor": "end" }, tickText(t)));
  }
  const every = Math.max(1, Math.ceil(n / 10));
  for (let i = 0; i < n; i += every) svg.append(s("text", { x: X(i), y: height - pad.b + 16, "text-anchor": "middle" }, String(i + 1)));
  svg.append(s("text", { x: (pad.l + width - pad.r) / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b, stroke: "#52606d" }));
  series.forEach((x, k) => {
    const color = x.color || PALETTE[k % PALETTE.length];
    let d = "";
    let pen = false;
    x.values.forEach((v, i) => {
      if (typeof v !== "number" || !Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)}`;
      pen = true;
    });
    svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": x.dashed ? "6 4" : null }));
    if (x.values.length === 1 && typeof x.values[0] === "number") svg.append(s("circle", { cx: X(0), cy: Y(x.values[0]), r: 3, fill: color }));
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((x, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("i");
    const color = x.color || PALETTE[k % PALETTE.length];
    swatch.style.background = x.dashed ? `repeating-linear-gradient(90deg, ${color} 0 6px, transparent 6px 10px)` : color;
    item.append(swatch, x.name);
    legend.append(item);
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(caption, svg, legend);
  return figure;
}

/** A confusion matrix: rows are the true class, columns the predicted one, counts in the cells. */
export function heatmap(matrix, labels = matrix.map((_, i) => String(i))) {
  const n = matrix.length;
  const cell = Math.max(24, Math.min(44, Math.floor(440 / Math.max(n, 1))));
  const pad = { l: 70, t: 54 };
  const width = pad.l + n * cell + 8, height = pad.t + n * cell + 8;
  const peak = Math.max(1, ...matrix.flat());
  const svg = s("svg", { class: "chart heatmap", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Confusion matrix of ${n} classes; diagonal (correct): ${matrix.map((r, i) => `${labels[i]} ${r[i]}`).join(", ")}` });
  svg.style.maxWidth = `${width * 1.2}px`;  // drawn about life size, smaller on a phone
  svg.append(s("text", { x: pad.l + (n * cell) / 2, y: 14, "text-anchor": "middle", "font-weight": 600 }, "predicted class"));
  svg.append(s("text", { x: 14, y: pad.t + (n * cell) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${pad.t + (n * cell) / 2})`, "font-weight": 600 }, "true class"));
  matrix.forEach((row, i) => {
    svg.append(s("text", { x: pad.l - 8, y: pad.t + i * cell + cell / 2 + 4, "text-anchor": "end" }, labels[i]));
    svg.append(s("text", { x: pad.l + i * cell + cell / 2, y: pad.t - 8, "text-anchor": "middle" }, labels[i]));
    row.forEach((value, j) => {
      const t = value / peak;
      // From white to the accent blue; text flips to white where the cell is dark.
      const shade = (a, b) => Math.round(a + (b - a) * t);
      const fill = `rgb(${shade(255, 29)},${shade(255, 78)},${shade(255, 216)})`;
      const g = s("g", { "data-row": i, "data-col": j });
      g.append(s("title", {}, `true ${labels[i]}, predicted ${labels[j]}: ${value}`));
      g.append(s("rect", { x: pad.l + j * cell, y: pad.t + i * cell, width: cell - 1, height: cell - 1, fill, stroke: "#d9e2ec" }));
      g.append(s("text", { x: pad.l + j * cell + cell / 2, y: pad.t + i * cell + cell / 2 + 4, "text-anchor": "middle", class: t > 0.5 ? "on-dark" : null }, String(value)));
      svg.append(g);
    });
  });
  return svg;
}

/** Bars of counts per class, with each class's label and colour. */
export function bars(counts, labelOf, colorOf) {
  const n = counts.length;
  const width = 560, height = 240, pad = { l: 40, r: 8, t: 20, b: 40 };
  const peak = Math.max(1, ...counts);
  const slot = (width - pad.l - pad.r) / Math.max(n, 1);
  const svg = s("svg", { class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Predicted classes: ${counts.map((c, i) => `${labelOf(i)} ${c}`).join(", ")}` });
  svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b, stroke: "#52606d" }));
  counts.forEach((c, i) => {
    const h = ((height - pad.t - pad.b) * c) / peak;
    const x = pad.l + i * slot + slot * 0.15;
    const g = s("g", { "data-class": i, "data-count": c });
    g.append(s("rect", { x, y: height - pad.b - h, width: slot * 0.7, height: h, fill: colorOf(i), stroke: "#1f2933", "stroke-opacity": 0.3 }));
    g.append(s("text", { x: x + slot * 0.35, y: height - pad.b - h - 5, "text-anchor": "middle" }, String(c)));
    g.append(s("text", { x: x + slot * 0.35, y: height - pad.b + 16, "text-anchor": "middle" }, labelOf(i)));
    svg.append(g);
  });
  return svg;
}
