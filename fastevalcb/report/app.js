/* fastevalcb report: renders the shards written by fastevalcb/report/build.py.
 * Shards arrive as <script src="<files>/<name>.js"> calling FEV.register(name, data)
 * (file:// pages may not fetch()), or, in an embedded report, as JSON script blocks. */
"use strict";
const FEV = (() => {
  const store = {}, waiting = {};
  const files = document.body.dataset.files;

  function register(name, data) {
    store[name] = data;
    if (waiting[name]) { waiting[name].resolve(data); delete waiting[name]; }
  }

  function load(name) {
    if (name in store) return Promise.resolve(store[name]);
    const block = document.getElementById("fev-" + name);
    if (block) { store[name] = JSON.parse(block.textContent); return Promise.resolve(store[name]); }
    if (!files) return Promise.reject(new Error(`the page holds no data block "${name}"`));
    if (waiting[name]) return waiting[name].promise;
    const w = waiting[name] = {};
    w.promise = new Promise((resolve, reject) => { w.resolve = resolve; w.reject = reject; });
    const s = document.createElement("script");
    s.src = `${files}/${name}.js`;
    s.onerror = () => { delete waiting[name];
      w.reject(new Error(`cannot load ${files}/${name}.js (was the folder moved or deleted?)`)); };
    document.head.appendChild(s);
    return w.promise;
  }
  return { register, load, store };
})();

(() => {
  const S = {  // page state
    meta: null, images: [], table: 0, a: null, b: null, sort: null, filters: {},
    changedOnly: false, limit: null, page: 0, pageSize: 50,
    layers: {}, hiddenClasses: new Set(), threshold: 0, preset: "", classSort: {},
  };
  const app = document.getElementById("app");
  const $ = (tag, attrs = {}, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === "text") el.textContent = v;
      else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) el.append(kid);
    return el;
  };
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs = {}) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  const fmt = v => v === null || v === undefined ? "–" :
    typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "")) :
    typeof v === "boolean" ? String(v) : String(v);
  const hue = id => (Number(id) * 137.508 + 20) % 360;
  const colour = id => `hsl(${hue(id)},75%,50%)`;
  function rgb(id) {  // hsl(h, 75%, 50%) -> [r, g, b]
    const h = hue(id) / 360, s = 0.75, l = 0.5, q = l + s - l * s, p = 2 * l - q;
    const f = t => { t = (t + 1) % 1;
      return 255 * (t < 1 / 6 ? p + (q - p) * 6 * t : t < 0.5 ? q : t < 2 / 3 ? p + (q - p) * (2 / 3 - t) * 6 : p); };
    return [f(h + 1 / 3), f(h), f(h - 1 / 3)].map(Math.round);
  }

  function fail(err) {
    const box = document.getElementById("error") || app.appendChild($("div", { id: "error", class: "problem" }));
    box.textContent = "The report could not show this: " + (err && err.message ? err.message : err);
    document.body.dataset.ready = "error";
  }
  window.addEventListener("error", e => fail(e.error || e.message));
  window.addEventListener("unhandledrejection", e => fail(e.reason));

  // -- data access ------------------------------------------------------------------------
  const table = () => S.meta.tables[S.table];
  const versionOf = i => table().versions[i];
  function classNames() {
    const out = {};
    for (const names of Object.values(table().classes || {})) Object.assign(out, names);
    return out;
  }
  function joinIndex(shard) {  // id -> row of a version
    if (!shard._join) {
      const ids = shard.cells.id;
      shard._join = new Map();
      for (let i = 0; i < shard.n; i++) shard._join.set(ids ? ids[i] : i, i);
    }
    return shard._join;
  }
  const SKIP_COMPARE = new Set(["id", "epoch", "step"]);
  function columns() {  // what the table shows: [{key, name, kind, get(row), side, col}]
    const a = S.a, out = [];
    const bCols = new Map();
    if (S.b) {  // the compared version's columns, joined on id, each next to its own
      const b = S.b, join = joinIndex(b), ids = a.cells.id;
      const other = i => join.get(ids ? ids[i] : i);
      const tag = versionOf(S.bIndex).label.split(" · ")[0];
      for (const c of b.columns) {
        if (SKIP_COMPARE.has(c.name)) continue;
        const name = `${c.name} (${tag})`;
        if (c.kind === "image") {
          const im = b.images[c.name];
          if (!Object.keys(im.boxes).length && !Object.keys(im.masks).length) continue;  // same pixels
          bCols.set(c.name, { key: "b:" + c.name, name, kind: "image", side: b, col: c.name, get: other });
        } else bCols.set(c.name, { key: "b:" + c.name, name, kind: c.kind, integer: c.integer,
          compare: "a:" + c.name,
          get: i => { const j = other(i); return j === undefined ? null : b.cells[c.name][j]; } });
      }
    }
    for (const c of a.columns) {
      if (c.kind === "image") out.push({ key: "a:" + c.name, name: c.name, kind: "image", side: a,
        col: c.name, get: i => i });
      else out.push({ key: "a:" + c.name, name: c.name, kind: c.kind, integer: c.integer,
        get: i => a.cells[c.name][i] });
      if (bCols.has(c.name)) { out.push(bCols.get(c.name)); bCols.delete(c.name); }
    }
    return out.concat([...bCols.values()]);
  }
  // "Changed" ignores floats (confidence, IoU drift every version): a sample changed when a
  // string, boolean or integer cell differs (pred, correct, tp ...), or its predicted boxes
  // (count or classes) or predicted mask content do.
  const discrete = c => c.kind === "string" || c.kind === "bool" || c.integer;
  function rowChanged(i, cols) {
    const byKey = Object.fromEntries(cols.map(c => [c.key, c]));
    for (const c of cols) {
      if (!c.compare || !byKey[c.compare] || !discrete(c)) continue;
      if (JSON.stringify(c.get(i)) !== JSON.stringify(byKey[c.compare].get(i))) return true;
    }
    for (const c of cols) {
      if (c.kind !== "image" || c.side !== S.b) continue;
      const j = c.get(i), imgA = S.a.images[c.col], imgB = S.b.images[c.col];
      if (j === undefined || !imgA) return true;
      for (const layer of Object.keys(imgB.boxes)) {
        if (layer === "ground_truth") continue;
        const ba = (imgA.boxes[layer] || [])[i] || [], bb = imgB.boxes[layer][j] || [];
        if (ba.length !== bb.length || ba.some((x, k) => x[4] !== bb[k][4])) return true;
      }
      for (const layer of Object.keys(imgB.masks)) {
        if (layer !== "ground_truth" && (imgA.masks[layer] || [])[i] !== imgB.masks[layer][j]) return true;
      }
    }
    return false;
  }
  function imageClasses(side, col, row) {
    const img = side.images[col], found = new Set();
    for (const boxes of Object.values(img.boxes)) for (const b of boxes[row] || []) found.add(String(b[4]));
    return found;
  }
  function selectedRows(cols) {
    const n = S.a.n, keep = [];
    const active = Object.entries(S.filters).filter(([, f]) => f && f.active);
    const byKey = Object.fromEntries(cols.map(c => [c.key, c]));
    outer: for (let i = 0; i < n; i++) {
      for (const [key, f] of active) {
        const c = byKey[key];
        if (!c) continue;
        if (c.kind === "image") {
          const j = c.get(i);
          if (j === undefined || !imageClasses(c.side, c.col, j).has(f.value)) continue outer;
          continue;
        }
        const v = c.get(i);
        if (f.type === "range") {
          if (v === null || v === undefined) continue outer;
          if (f.min !== "" && v < Number(f.min)) continue outer;
          if (f.max !== "" && v > Number(f.max)) continue outer;
        } else if (f.type === "equal") {
          if (String(v) !== f.value) continue outer;
        } else if (f.type === "contains") {
          if (!String(v ?? "").toLowerCase().includes(f.value.toLowerCase())) continue outer;
        }
      }
      if (S.changedOnly && S.b && !rowChanged(i, cols)) continue;
      keep.push(i);
    }
    if (S.sort && byKey[S.sort.key]) {
      const c = byKey[S.sort.key], dir = S.sort.dir;
      const vals = new Map(keep.map(i => [i, c.get(i)]));
      keep.sort((x, y) => {
        const a = vals.get(x), b = vals.get(y);
        const an = a === null || a === undefined, bn = b === null || b === undefined;
        if (an || bn) return an - bn || x - y;  // missing values last, whatever the direction
        return (a < b ? -1 : a > b ? 1 : 0) * dir || x - y;
      });
    }
    return S.limit ? keep.slice(0, S.limit) : keep;
  }

  // -- media --------------------------------------------------------------------------------
  const maskCache = new Map();
  function maskChunks(rows, cols) {
    const need = new Set();
    for (const c of cols) {
      if (c.kind !== "image") continue;
      for (const i of rows) {
        const j = c.get(i);
        if (j === undefined) continue;
        for (const ids of Object.values(c.side.images[c.col].masks)) {
          if (ids[j] !== null && ids[j] !== undefined) need.add(Math.floor(ids[j] / S.meta.mask_chunk));
        }
      }
    }
    return Promise.all([...need].map(k => FEV.load("masks" + k)));
  }
  function maskFor(id) {
    const chunk = FEV.store["masks" + Math.floor(id / S.meta.mask_chunk)];
    return chunk ? chunk[id % S.meta.mask_chunk] : null;
  }
  function drawMask(canvas, mask) {
    canvas.width = mask.w; canvas.height = mask.h;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(mask.w, mask.h), px = img.data;
    const palette = {};
    let p = 0;
    for (let k = 0; k < mask.rle.length; k += 2) {
      const v = mask.rle[k], len = mask.rle[k + 1];
      if (!S.hiddenClasses.has(String(v))) {
        const c = palette[v] || (palette[v] = rgb(v));
        for (let e = p + len; p < e; p++) {
          px[4 * p] = c[0]; px[4 * p + 1] = c[1]; px[4 * p + 2] = c[2]; px[4 * p + 3] = 115;
        }
      } else p += len;
    }
    ctx.putImageData(img, 0, 0);
  }
  function imageCell(c, i) {
    const j = c.get(i);
    if (j === undefined) return $("span", { class: "missing", text: "no such id in this version" });
    const col = c.side.images[c.col], id = col.image[j], size = col.size[j] || [64, 64];
    const names = classNames();
    const scale = Math.max(1, Math.min(4, Math.floor(160 / Math.max(size[0], size[1]))));
    const wrap = $("div", { class: "img", style: `width:${size[0] * scale}px;height:${size[1] * scale}px` });
    if (id === null || id === undefined) {
      return $("span", { class: "missing", text: "image file missing from the run (see the list above)" });
    }
    const im = $("img", { src: S.images[id], width: size[0] * scale, height: size[1] * scale, alt: "" });
    im.addEventListener("error", () => im.replaceWith($("span", { class: "missing",
      text: `cannot open ${decodeURIComponent(S.images[id]).slice(0, 120)}` })));
    wrap.append(im);
    for (const [layer, ids] of Object.entries(col.masks)) {
      if (!S.layers["masks:" + layer] || ids[j] === null || ids[j] === undefined) continue;
      const m = maskFor(ids[j]);
      if (!m) { wrap.append($("span", { class: "missing", text: `mask ${layer} missing` })); continue; }
      const cv = $("canvas", { class: "mask", "data-layer": layer });
      drawMask(cv, m);
      wrap.append(cv);
    }
    const boxLayers = Object.entries(col.boxes).filter(([layer]) => S.layers["boxes:" + layer]);
    if (boxLayers.length) {
      const s = svg("svg", { viewBox: `0 0 ${size[0]} ${size[1]}`, preserveAspectRatio: "none" });
      for (const [layer, rows] of boxLayers) {
        for (const [x0, y0, x1, y1, cls, score] of rows[j] || []) {
          if (S.hiddenClasses.has(String(cls))) continue;
          if (score !== null && score < S.threshold) continue;
          const r = svg("rect", { class: `box ${layer}`, x: x0, y: y0, width: Math.max(0, x1 - x0),
            height: Math.max(0, y1 - y0), stroke: colour(cls), "data-layer": layer, "data-class": cls,
            "data-score": score === null ? "" : score });
          s.append(r);
          // Predictions captioned above the box, ground truth inside its bottom edge.
          const ty = layer === "ground_truth" ? Math.max(y1 - 2, 8) : Math.max(y0 - 1, 8);
          const label = svg("text", { x: x0 + 1, y: ty, class: `caption ${layer}`,
            transform: `scale(${1 / scale})`, "transform-origin": `${x0 + 1} ${ty}` });
          label.textContent = (names[cls] ?? cls) + (score === null ? "" : " " + score.toFixed(2));
          s.append(label);
        }
      }
      wrap.append(s);
    }
    return wrap;
  }

  // -- rendering ----------------------------------------------------------------------------
  function renderHeader() {
    const m = S.meta, head = $("div", { id: "head" });
    head.append($("h1", { text: `Run ${m.run.id}` }),
      $("div", { class: "muted", text: `${m.run.dir} · generated ${m.generated} · built in ${m.build_s} s` }));
    const problems = [...m.problems];
    if (m.missing_media.length) problems.push(`${m.missing_media.length} media file(s) are missing; ` +
      "their cells say so. First: " + m.missing_media.slice(0, 5).join("; "));
    if (problems.length) head.append($("ul", { class: "problem problems", id: "problems" },
      ...problems.map(p => $("li", { text: p }))));
    return head;
  }
  function renderMetrics() {
    const series = Object.entries(S.meta.metrics.series).filter(([, pts]) => pts.some(p => p[1] !== null));
    const box = $("div", { class: "metrics", id: "metrics" });
    for (const [name, pts] of series.slice(0, 24)) {
      const W = 200, H = 90, L = 34, B = 16, good = pts.filter(p => p[1] !== null && p[0] !== null);
      const xs = good.map(p => p[0]), ys = good.map(p => p[1]);
      const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
      const X = x => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - 6);
      const Y = y => 14 + (y1 === y0 ? 0.5 : 1 - (y - y0) / (y1 - y0)) * (H - 14 - B);
      const s = svg("svg", { class: "metric", width: W, height: H, "data-metric": name });
      const t = svg("text", { x: 4, y: 11 }); t.textContent = `${name} (last ${fmt(ys[ys.length - 1])})`; s.append(t);
      for (const [y, v] of [[Y(y1), y1], [Y(y0), y0]]) {
        const a = svg("text", { x: 2, y: y + 3 }); a.textContent = fmt(v); s.append(a);
      }
      const st = svg("text", { x: L, y: H - 3 }); st.textContent = `step ${x0}…${x1}`; s.append(st);
      s.append(svg("polyline", { points: good.map(p => `${X(p[0])},${Y(p[1])}`).join(" ") }));
      for (const p of good) s.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2 }));
      box.append(s);
    }
    if (!series.length) box.append($("span", { class: "muted", text: "no summary metrics were logged" }));
    return box;
  }
  // -- metric tables: per class (sortable), confusion heatmap, curves -----------------------
  const kindOf = name => name.slice(name.lastIndexOf("/") + 1);
  function renderClassMetrics() {
    const tables = Object.entries(S.meta.metric_tables || {});
    if (!tables.length) return null;
    const box = $("div", { id: "class-metrics" });
    for (const [name, t] of tables) {
      const kind = kindOf(name), title = `${name} (step ${t.step})`;
      const el = kind === "per_class" ? perClassTable(name, t)
        : kind === "confusion_matrix_table" ? heatmap(name, t)
        : kind === "pr_curve_table" ? curves(name, t, "recall", "precision", "class")
        : curves(name, t, "step", "lineVal", "lineKey");
      box.append($("div", { class: "metric-table", "data-name": name }, $("h3", { text: title }), el));
    }
    return box;
  }
  function perClassTable(name, t) {
    const sort = S.classSort[name] || null;
    const rows = t.data.map((r, i) => [r, i]);
    if (sort) {
      const c = sort.col, nul = sort.dir > 0 ? Infinity : -Infinity;
      const key = v => v === null || v === undefined ? nul : v;
      rows.sort((a, b) => {
        const x = key(a[0][c]), y = key(b[0][c]);
        return x < y ? -sort.dir : x > y ? sort.dir : a[1] - b[1];
      });
    }
    const head = $("tr", {}, ...t.columns.map((col, c) => $("th", {
      "data-col": col, class: sort && sort.col === c ? (sort.dir > 0 ? "sorted-asc" : "sorted-desc") : null,
      on: { click: () => {  // ascending, then descending
        S.classSort[name] = { col: c, dir: sort && sort.col === c && sort.dir > 0 ? -1 : 1 };
        const host = document.querySelector(`.metric-table[data-name="${name}"] table`);
        host.replaceWith(perClassTable(name, t));
      } }, text: col })));
    const body = rows.map(([r]) => $("tr", {}, ...r.map((v, c) =>
      $("td", { class: typeof v === "number" ? "num" : null, "data-col": t.columns[c], text: fmt(v) }))));
    return $("table", { class: "rows per-class", "data-name": name }, $("thead", {}, head), $("tbody", {}, ...body));
  }
  function heatmap(name, t) {
    const [ia, ip, ic] = ["Actual", "Predicted", "nPredictions"].map(c => t.columns.indexOf(c));
    const labels = [];
    for (const r of t.data) for (const v of [r[ia], r[ip]]) if (!labels.includes(v)) labels.push(v);
    const n = labels.length, cell = Math.max(14, Math.min(34, Math.floor(420 / Math.max(n, 1))));
    const L = 90, T = 90, s = svg("svg", { class: "heatmap", "data-name": name,
      width: L + n * cell + 60, height: T + n * cell + 4 });
    const counts = labels.map(() => labels.map(() => 0));
    for (const r of t.data) counts[labels.indexOf(r[ia])][labels.indexOf(r[ip])] += r[ic];
    labels.forEach((lab, i) => {
      const y = svg("text", { x: L - 4, y: T + i * cell + cell / 2 + 4, "text-anchor": "end" }); y.textContent = lab; s.append(y);
      const x = svg("text", { x: 0, y: 0, transform: `translate(${L + i * cell + cell / 2 + 4},${T - 4}) rotate(-60)` });
      x.textContent = lab; s.append(x);
    });
    counts.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;  // shaded by the row's share
      row.forEach((v, j) => {
        const r = svg("rect", { class: "cell", x: L + j * cell, y: T + i * cell, width: cell - 1, height: cell - 1,
          fill: `rgba(31,119,180,${(0.05 + 0.95 * v / total).toFixed(3)})`,
          "data-actual": labels[i], "data-predicted": labels[j], "data-count": v });
        const tip = svg("title"); tip.textContent = `actual ${labels[i]}, predicted ${labels[j]}: ${v}`; r.append(tip);
        s.append(r);
        if (cell >= 20) { const c = svg("text", { x: L + j * cell + cell / 2, y: T + i * cell + cell / 2 + 4, "text-anchor": "middle" });
          c.textContent = v; s.append(c); }
      });
    });
    const axes = svg("text", { x: 2, y: 12 }); axes.textContent = "rows: actual · columns: predicted"; s.append(axes);
    return s;
  }
  function curves(name, t, xcol, ycol, keycol) {
    const [ix, iy, ik] = [xcol, ycol, keycol].map(c => t.columns.indexOf(c));
    const byKey = new Map();
    for (const r of t.data) {
      if (r[ix] === null || r[iy] === null) continue;
      if (!byKey.has(r[ik])) byKey.set(r[ik], []);
      byKey.get(r[ik]).push([r[ix], r[iy]]);
    }
    const W = 300, H = 220, L = 34, B = 24, s = svg("svg", { class: "curves", "data-name": name, width: W + 110, height: H });
    const X = x => L + x * (W - L - 6), Y = y => 8 + (1 - y) * (H - 8 - B);
    s.append(svg("rect", { x: L, y: 8, width: W - L - 6, height: H - 8 - B, class: "frame" }));
    for (const v of [0, 0.5, 1]) {
      const a = svg("text", { x: 2, y: Y(v) + 3 }); a.textContent = v; s.append(a);
      const b = svg("text", { x: X(v) - 6, y: H - 10 }); b.textContent = v; s.append(b);
    }
    const xl = svg("text", { x: L + 90, y: H - 1 }); xl.textContent = xcol === "step" ? "confidence" : xcol; s.append(xl);
    let k = 0;
    for (const [key, pts] of byKey) {
      pts.sort((a, b) => a[0] - b[0]);
      const col = key === "mean" ? "#000" : colour(k);
      s.append(svg("polyline", { "data-key": key, stroke: col, points: pts.map(p => `${X(p[0])},${Y(p[1])}`).join(" ") }));
      const lab = svg("text", { x: W + 2, y: 16 + 12 * k, fill: col }); lab.textContent = key; s.append(lab);
      k++;
    }
    return s;
  }
  function presets() {
    const names = new Set(S.a.columns.map(c => c.name)), out = [];
    if (names.has("confidence") && names.has("correct")) {
      out.push(["lowest confidence among correct", { filters: { "a:correct": { active: true, type: "equal", value: "true" } }, sort: { key: "a:confidence", dir: 1 } }]);
      out.push(["highest-confidence mistakes", { filters: { "a:correct": { active: true, type: "equal", value: "false" } }, sort: { key: "a:confidence", dir: -1 } }]);
    }
    for (const c of S.a.columns) {
      if (c.kind === "number" && /iou|ap\d*|accuracy|precision|recall|confidence|score/i.test(c.name) &&
          !(c.name === "confidence" && names.has("correct")))
        out.push([`lowest ${c.name}`, { filters: {}, sort: { key: "a:" + c.name, dir: 1 } }]);
    }
    return out;
  }
  function renderControls() {
    const t = table(), bar = $("div", { class: "bar", id: "controls" });
    const tableSel = $("select", { id: "table", on: { change: e => { S.table = +e.target.value; S.b = null;
      S.bIndex = null; S.filters = {}; S.sort = null; S.limit = null; S.preset = "";
      showVersion(table().versions.length - 1); } } },
      ...S.meta.tables.map((x, k) => $("option", { value: k, selected: k === S.table,
        text: `${x.artifact} / ${x.table} (${x.type}, ${x.versions.length} versions)` })));
    const verOpts = sel => t.versions.map((v, k) => $("option", { value: k, selected: k === sel,
      disabled: !!v.error, text: v.label + (v.error ? " (unreadable)" : "") }));
    const verSel = $("select", { id: "version", on: { change: e => showVersion(+e.target.value) } },
      ...verOpts(S.aIndex));
    const cmpSel = $("select", { id: "compare", on: { change: e => compareWith(e.target.value === "" ? null : +e.target.value) } },
      $("option", { value: "", text: "— none —", selected: S.bIndex === null }), ...verOpts(S.bIndex));
    const changed = $("input", { type: "checkbox", id: "changed", checked: S.changedOnly, disabled: !S.b,
      on: { change: e => { S.changedOnly = e.target.checked; S.page = 0; renderRows(); } } });
    const ps = presets();
    const worst = $("select", { id: "worst", on: { change: e => applyPreset(e.target.value, ps) } },
      $("option", { value: "", text: "— all rows —" }),
      ...ps.map(([name]) => $("option", { value: name, selected: S.preset === name, text: name })));
    const k = $("input", { type: "number", id: "worst-k", min: 1, value: S.limit || 20, style: "width:60px",
      on: { change: () => applyPreset(S.preset, ps) } });
    bar.append($("label", {}, "table ", tableSel), $("label", {}, "version ", verSel),
      $("label", {}, "compare with ", cmpSel), $("label", {}, changed, " changed predictions only"),
      $("label", {}, "worst ", k, " by ", worst));
    return bar;
  }
  function applyPreset(name, ps) {
    S.preset = name;
    const p = ps.find(x => x[0] === name);
    if (!p) { S.limit = null; S.filters = {}; S.sort = null; }
    else {
      S.filters = JSON.parse(JSON.stringify(p[1].filters)); S.sort = { ...p[1].sort };
      S.limit = Math.max(1, +document.getElementById("worst-k").value || 20);
    }
    S.page = 0; render();
  }
  function renderOverlayControls() {
    const t = table(), bar = $("div", { class: "bar legend", id: "overlays" });
    const layers = [...(t.layers?.boxes || []).map(l => "boxes:" + l), ...(t.layers?.masks || []).map(l => "masks:" + l)];
    if (!layers.length) return bar;
    for (const key of layers) {
      if (!(key in S.layers)) S.layers[key] = true;
      bar.append($("label", {}, $("input", { type: "checkbox", class: "layer", "data-layer": key, checked: S.layers[key],
        on: { change: e => { S.layers[key] = e.target.checked; renderRows(); } } }), " " + key.replace(":", " ")));
    }
    const names = classNames();
    for (const [id, name] of Object.entries(names)) {
      bar.append($("label", {}, $("input", { type: "checkbox", class: "class", "data-class": id,
        checked: !S.hiddenClasses.has(id), on: { change: e => {
          if (e.target.checked) S.hiddenClasses.delete(id); else S.hiddenClasses.add(id); renderRows(); } } }),
        $("span", { class: "swatch", style: `background:${colour(id)}` }), name));
    }
    if (t.layers?.boxes?.length) {
      const out = $("span", { id: "threshold-value", text: S.threshold.toFixed(2) });
      bar.append($("label", {}, "score ≥ ", $("input", { type: "range", id: "threshold", min: 0, max: 1, step: 0.01,
        value: S.threshold, on: { input: e => { S.threshold = +e.target.value; out.textContent = S.threshold.toFixed(2); renderRows(); } } }), " ", out));
    }
    return bar;
  }
  function filterCell(c) {
    const f = S.filters[c.key];
    const set = v => { S.filters[c.key] = v; S.page = 0; S.preset = ""; renderRows(); };
    if (c.kind === "number") {
      const lo = $("input", { type: "number", step: "any", placeholder: "min", "data-filter": c.key + ":min", value: f?.min ?? "" });
      const hi = $("input", { type: "number", step: "any", placeholder: "max", "data-filter": c.key + ":max", value: f?.max ?? "" });
      const upd = () => set({ type: "range", min: lo.value, max: hi.value, active: lo.value !== "" || hi.value !== "" });
      lo.addEventListener("change", upd); hi.addEventListener("change", upd);
      return $("th", {}, lo, hi);
    }
    let values = null;
    if (c.kind === "image") {
      values = Object.entries(classNames()).map(([id, name]) => [id, name]);
      if (!values.length) return $("th");
    } else if (c.kind === "bool" || c.kind === "string") {
      const seen = new Set();
      for (let i = 0; i < S.a.n && seen.size <= 100; i++) { const v = c.get(i); if (v !== null && v !== undefined) seen.add(String(v)); }
      if (seen.size <= 100) values = [...seen].sort().map(v => [v, v]);
    }
    if (values) {
      const sel = $("select", { "data-filter": c.key, on: { change: e => set({ type: "equal", value: e.target.value, active: e.target.value !== "" }) } },
        $("option", { value: "", text: c.kind === "image" ? "any class" : "any" }),
        ...values.map(([v, label]) => $("option", { value: v, text: label, selected: f?.value === v })));
      return $("th", {}, sel);
    }
    const inp = $("input", { type: "text", placeholder: "contains", "data-filter": c.key, value: f?.value ?? "",
      on: { change: e => set({ type: "contains", value: e.target.value, active: e.target.value !== "" }) } });
    return $("th", {}, inp);
  }
  function renderRows() {
    const host = document.getElementById("rows");
    const cols = columns(), rows = selectedRows(cols);
    const pages = Math.max(1, Math.ceil(rows.length / S.pageSize));
    S.page = Math.min(S.page, pages - 1);
    const visible = rows.slice(S.page * S.pageSize, (S.page + 1) * S.pageSize);
    const token = S.renderToken = (S.renderToken || 0) + 1;
    return maskChunks(visible, cols).catch(err => { fail(err); }).then(() => {
      if (token !== S.renderToken) return;  // a newer render won
      const head = $("tr", {}, ...cols.map(c => $("th", {
        class: S.sort?.key === c.key ? (S.sort.dir > 0 ? "sorted-asc" : "sorted-desc") : null,
        "data-key": c.key, text: c.name, on: { click: () => {
          S.sort = S.sort?.key === c.key ? (S.sort.dir > 0 ? { key: c.key, dir: -1 } : null) : { key: c.key, dir: 1 };
          S.preset = ""; renderRows(); } } })));
      const filters = $("tr", { class: "filters" }, ...cols.map(filterCell));
      const body = $("tbody");
      for (const i of visible) {
        const tr = $("tr", { "data-row": i, "data-id": S.a.cells.id ? S.a.cells.id[i] : i });
        const byKey = Object.fromEntries(cols.map(c => [c.key, c]));
        for (const c of cols) {
          if (c.kind === "image") { tr.append($("td", {}, imageCell(c, i))); continue; }
          const v = c.get(i);
          const changed = c.compare && byKey[c.compare] &&
            JSON.stringify(v) !== JSON.stringify(byKey[c.compare].get(i));
          tr.append($("td", { class: (c.kind === "number" ? "num" : "") + (changed ? " changed" : ""),
            "data-key": c.key, text: fmt(v) }));
        }
        body.append(tr);
      }
      const pager = $("div", { class: "bar pager" },
        $("span", { id: "count", "data-rows": rows.length,
          text: `${rows.length} of ${S.a.n} rows` + (rows.length ? ` · showing ${S.page * S.pageSize + 1}–${S.page * S.pageSize + visible.length}` : "") }),
        $("button", { id: "prev", disabled: S.page === 0, on: { click: () => { S.page--; renderRows(); } }, text: "‹ prev" }),
        $("span", { text: `page ${S.page + 1} / ${pages}` }),
        $("button", { id: "next", disabled: S.page >= pages - 1, on: { click: () => { S.page++; renderRows(); } }, text: "next ›" }),
        $("label", {}, "rows per page ", $("select", { id: "page-size", on: { change: e => { S.pageSize = +e.target.value; S.page = 0; renderRows(); } } },
          ...[25, 50, 100, 200].map(n => $("option", { value: n, selected: n === S.pageSize, text: n })))));
      host.replaceChildren(pager, $("table", { class: "rows" }, $("thead", {}, head, filters), body));
      if (!rows.length) host.append($("p", { class: "muted", id: "empty", text: "no rows match the filters" }));
      if (!document.body.dataset.firstRenderMs)  // navigation start -> first rows on screen
        document.body.dataset.firstRenderMs = performance.now().toFixed(1);
      document.body.dataset.ready = String(token);
    });
  }
  function render() {
    const parts = [renderHeader(), $("h2", { text: "Summary metrics" }), renderMetrics()];
    const byClass = renderClassMetrics();
    if (byClass) parts.push($("h2", { text: "Per class (latest version)" }), byClass);
    if (S.meta.tables.length) {
      parts.push($("h2", { text: "Samples" }), renderControls());
      if (S.a) parts.push(renderOverlayControls(), $("div", { id: "rows" }));
      else parts.push($("p", { class: "problem", text: "no readable version of this table" }));
    }
    app.replaceChildren(...parts);
    return S.a ? renderRows() : (document.body.dataset.ready = "1", Promise.resolve());
  }
  function showVersion(k) {
    let v = versionOf(k);
    if (v && v.error) {  // the latest readable version instead
      k = table().versions.map(x => !x.error).lastIndexOf(true);
      v = versionOf(k);
    }
    if (!v || v.error) { S.a = null; S.aIndex = null; return render(); }
    return FEV.load(v.shard).then(shard => {
      S.a = shard; S.aIndex = k; S.page = 0;
      for (const key of Object.keys(S.filters)) if (!columns().some(c => c.key === key)) delete S.filters[key];
      return render();
    }).catch(fail);
  }
  function compareWith(k) {
    if (k === null) { S.b = null; S.bIndex = null; S.changedOnly = false; return render(); }
    return FEV.load(versionOf(k).shard).then(shard => { S.b = shard; S.bIndex = k; S.page = 0; return render(); })
      .catch(fail);
  }

  Promise.all([FEV.load("meta"), FEV.load("images")]).then(([meta, images]) => {
    S.meta = meta; S.images = images;
    for (const t of meta.tables) for (const names of Object.values(t.classes || {}))
      for (const [id, name] of Object.entries(names)) if (/^background$/i.test(name)) S.hiddenClasses.add(id);
    if (!meta.tables.length) return render();
    return showVersion(table().versions.length - 1);
  }).catch(fail);
  window.fevState = S;  // for tests and the curious
})();
