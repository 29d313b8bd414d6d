// The dashboard page: signs in once, reads the server's pushed snapshots, renders them, and drives the
// control plane. Plain browser JavaScript: no build step, no library, no network but this origin.
//
// The admin token lives in this tab's sessionStorage and travels as the X-Admin-Token header. The
// stream (/_admin/dashboard/stream, server-sent events) is read with fetch() for that reason: an
// EventSource cannot send a header, and the token must never appear in a URL.
"use strict";

(() => {
  const TOKEN_KEY = "hostedai-admin-token";
  const API_KEY = "hostedai-api-key";
  const PAGE = 48;
  const SUMMARY_EVERY_MS = 10000; // aria-live: at most one announcement per 10 s
  const STATE_GLYPHS = { active: "●", preempted: "⇣", expired: "⌛", released: "○", failed: "✖" };
  const BAND_ORDER = [".", "1", "2", "3", "4", "x"];
  const LEAK_WORDS = { still_active: "still held", expired_unreleased: "expired, never released" };

  const $ = (id) => document.getElementById(id);
  const view = { pool_id: "", gpu_sort: "index", gpu_offset: 0, allocation_state: "", leak_grace_s: "",
    journal_operation: "", journal_status: "", journal_tenant_id: "" };
  let token = sessionStorage.getItem(TOKEN_KEY);
  let stream = null; // the AbortController of the running stream
  let retryMs = 1000;
  let last = null; // the last snapshot rendered
  let announced = "";
  let announceTimer = null;

  // ---- helpers -----------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else if (name in node) node[name] = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function num(x, digits = 2) {
    return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, seconds);
    if (s < 60) return `${num(s, 1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function meter(allocated, physical, unit) {
    const level = physical ? allocated / physical : 0;
    const bar = el("span", { class: `bar${level > 1 + 1e-9 ? " over" : level >= 0.75 ? " high" : ""}`, "aria-hidden": "true" },
      el("span"));
    bar.firstChild.style.width = `${Math.min(100, level * 100)}%`;
    const words = `${num(allocated)} / ${num(physical)}${unit} (${num(level * 100, 0)}%)`;
    return el("span", { class: "meter" }, bar, el("span", { class: "meter-text" }, words));
  }

  function stateCell(state) {
    return el("td", { class: `state-${state}` }, `${STATE_GLYPHS[state] || "?"} ${state}`);
  }

  function statusCell(status) {
    if (status === null) return el("td", { class: "status-none" }, "✖ none sent");
    const kind = status >= 500 ? "server" : status >= 400 ? "client" : "ok";
    const glyph = { server: "✖", client: "!", ok: "✓" }[kind];
    return el("td", { class: `status-${kind}` }, `${glyph} ${status}`);
  }

  function bandClass(band) {
    return band === "." ? "band-dot" : `band-${band}`;
  }

  // Re-rendering replaces rows: keep the keyboard focus on the control it was on.
  function keepingFocus(render) {
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.focusKey : undefined;
    render();
    if (focused) {
      const again = document.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function say(text, isError = false) {
    const out = $("action-result");
    out.textContent = text;
    out.classList.toggle("error", isError);
  }

  // ---- talking to the mock -----------------------------------------------------------------------

  function query(extra = {}) {
    const params = new URLSearchParams({ gpu_limit: PAGE, ...extra });
    for (const [name, value] of Object.entries(view)) {
      if (value !== "" && value !== null) params.set(name, value);
    }
    return params.toString();
  }

  async function admin(method, path, body) {
    const headers = { "X-Admin-Token": token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 401) {
      signOut("The mock refused that token.");
      throw new Error("unauthorized");
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Error(data && data.detail ? `${data.code}: ${data.detail}` : `HTTP ${response.status}`);
    return data;
  }

  async function act(description, work) {
    try {
      await work();
      say(description);
      await refresh();
    } catch (error) {
      if (error.message !== "unauthorized") say(`${description} failed: ${error.message}`, true);
    }
  }

  async function refresh() {
    render(await admin("GET", `/_admin/dashboard?${query()}`));
  }

  function setConnection(text, kind) {
    const node = $("connection");
    if (node.textContent !== text) node.textContent = text;
    node.className = kind;
  }

  async function readStream(controller) {
    const response = await fetch(`/_admin/dashboard/stream?${query()}`, {
      headers: { "X-Admin-Token": token, Accept: "text/event-stream" }, cache: "no-store", signal: controller.signal });
    if (response.status === 401) {
      signOut("The mock refused that token.");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    setConnection("Live: the mock pushes a snapshot every second", "live");
    retryMs = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (event === "snapshot") render(JSON.parse(data.join("\n")));
        else if (event === "error") say(`The stream failed: ${JSON.parse(data.join("\n")).detail}`, true);
      }
    }
  }

  function connect() {
    if (stream) stream.abort();
    const controller = new AbortController();
    stream = controller;
    readStream(controller).then(
      () => { if (stream === controller && token) reconnectLater("The stream ended"); },
      (error) => { if (stream === controller && error.name !== "AbortError") reconnectLater(`Disconnected (${error.message})`); },
    );
  }

  function reconnectLater(why) {
    setConnection(`${why}; trying again in ${Math.round(retryMs / 1000)} s`, "down");
    const controller = stream;
    setTimeout(() => { if (stream === controller && token) connect(); }, retryMs);
    retryMs = Math.min(retryMs * 2, 15000);
  }

  // ---- signing in ----------------------------------------------------------------------------------

  function signOut(reason) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (stream) stream.abort();
    stream = null;
    $("dashboard").hidden = true;
    $("clock-panel").hidden = true;
    $("sign-out").hidden = true;
    $("login-panel").hidden = false;
    $("login-error").textContent = reason || "";
    setConnection("Not connected", "");
    $("token").focus();
  }

  async function signIn() {
    $("login-panel").hidden = true;
    $("dashboard").hidden = false;
    $("clock-panel").hidden = false;
    $("sign-out").hidden = false;
    setConnection("Connecting…", "");
    try {
      const { scenarios } = await admin("GET", "/_admin/scenarios");
      $("scenario").replaceChildren(...scenarios.map((s) => el("option", { value: s.name, "data-description": s.description }, s.name)));
      describeScenario();
      await refresh();
      $("summary").focus();
    } catch (error) {
      if (error.message !== "unauthorized") setConnection(`Could not reach the mock (${error.message})`, "down");
    }
    if (token) connect();
  }

  function describeScenario() {
    const option = $("scenario").selectedOptions[0];
    $("scenario-description").textContent = option ? option.dataset.description : "";
  }

  // ---- rendering -----------------------------------------------------------------------------------

  function render(snapshot) {
    last = snapshot;
    keepingFocus(() => {
      renderClock(snapshot.clock);
      renderPools(snapshot);
      renderGpus(snapshot.gpus);
      renderAllocations(snapshot.allocations);
      renderLeaks(snapshot.leaks);
      renderLatency(snapshot.latency);
      renderRules(snapshot.rules);
      renderJournal(snapshot.journal);
    });
    renderSummary(snapshot);
    document.body.dataset.clock = snapshot.clock.now_s;
  }

  function renderSummary(s) {
    const t = s.totals;
    const text = `${t.pools} pools, ${t.gpus_healthy} of ${t.gpus} GPUs healthy, ${t.allocations_active} active ` +
      `allocations, ${t.inflight} inferences in flight, ${t.leaks} leaks, ${t.rules} fault rules.`;
    $("summary").textContent = text;
    // Screen readers hear the same line, without the in-flight count (it moves every second under
    // load), and at most once per SUMMARY_EVERY_MS.
    const spoken = text.replace(/, \d+ inferences in flight/, "");
    if (spoken === announced || announceTimer) return;
    const announce = () => {
      announceTimer = null;
      announced = $("summary").textContent.replace(/, \d+ inferences in flight/, "");
      $("announce").textContent = announced;
    };
    if (!announced) announce();
    else announceTimer = setTimeout(announce, SUMMARY_EVERY_MS);
  }

  function renderClock(clock) {
    const manual = clock.kind === "manual";
    const pace = manual ? "manual clock" : `real clock, ${num(clock.time_scale, 4)} real s per simulated s`;
    $("clock").textContent = `Simulated time ${clock.now} (t = ${num(clock.now_s, 3)} s), ${pace}`;
    $("advance").hidden = !manual;
  }

  function renderPools(s) {
    fill($("pools").tBodies[0], s.pools.map((p) => el("tr", { "data-key": p.pool_id },
      el("th", { scope: "row" }, p.pool_id),
      el("td", {}, p.gpu_type),
      el("td", { class: "num" }, `${p.gpus_healthy} / ${p.gpus}`),
      el("td", { class: "compute" }, meter(p.tflops_allocated, p.tflops_total, "")),
      el("td", { class: "vram" }, meter(p.vram_mb_allocated, p.vram_mb_total, "")),
      el("td", { class: "overcommit" }, `${num(p.compute_level, 2)}× of ${num(p.overcommit_ratio)}× allowed`),
      el("td", { class: "num active" }, p.allocations_active),
      el("td", { class: "num" }, p.inflight),
      el("td", { class: "num" }, p.queued),
    )));
    $("maps").replaceChildren(...s.pools.map((p) => {
      const counts = BAND_ORDER.filter((b) => p.bands[b]).map((b) => `${p.bands[b]} ${s.bands[b].split(":")[0]}`);
      const label = `${p.pool_id}: ${p.gpus} GPUs${p.gpus_per_cell > 1 ? `, ${p.gpus_per_cell} per cell` : ""}; ${counts.join(", ")}`;
      const cells = [...p.map].map((b) => el("span", { class: bandClass(b) }, b));
      return el("div", {}, el("p", { class: "note" }, label), el("div", { class: "map", "aria-hidden": "true" }, ...cells));
    }));
    const legend = $("legend");
    if (!legend.childElementCount) {
      // In band order (a JavaScript object lists integer-like keys first).
      legend.append(...BAND_ORDER.filter((b) => b in s.bands).map((b) =>
        el("div", {}, el("dt", { class: bandClass(b) }, b), el("dd", {}, s.bands[b]))));
    }
    const select = $("gpu-pool");
    if (select.options.length !== s.pools.length + 1) {
      select.replaceChildren(el("option", { value: "" }, "every pool"),
        ...s.pools.map((p) => el("option", { value: p.pool_id }, p.pool_id)));
      select.value = view.pool_id;
      $("allocate-pool").replaceChildren(...s.pools.map((p) => el("option", { value: p.pool_id }, p.pool_id)));
    }
    if ($("leak-grace").value === "" && document.activeElement !== $("leak-grace")) $("leak-grace").value = s.leaks.grace_s;
  }

  function renderGpus(g) {
    const first = g.total ? g.offset + 1 : 0;
    $("gpu-page").textContent = `GPUs ${num(first)}–${num(g.offset + g.rows.length)} of ${num(g.total)}`;
    $("gpu-prev").disabled = g.offset === 0;
    $("gpu-next").disabled = g.offset + g.rows.length >= g.total;
    fill($("gpus").tBodies[0], g.rows.map((gpu) => el("tr", { "data-key": gpu.gpu_id, class: gpu.healthy ? "" : "down" },
      el("th", { scope: "row" }, gpu.gpu_id),
      el("td", { class: gpu.healthy ? "state-active" : "state-failed" }, gpu.healthy ? "✓ healthy" : "✖ failed"),
      el("td", {}, el("span", { class: `band-cell ${bandClass(gpu.band)}`, title: last.bands[gpu.band] }, gpu.band)),
      el("td", {}, meter(gpu.tflops_allocated, gpu.tflops, "")),
      el("td", {}, meter(gpu.vram_mb_allocated, gpu.vram_mb, "")),
      el("td", { class: "num" }, gpu.allocations),
      el("td", { class: "num" }, gpu.inflight),
      el("td", { class: "num" }, gpu.queued),
      el("td", {}, el("button", { type: "button", "data-focus-key": `gpu:${gpu.gpu_id}`,
        "data-gpu": gpu.gpu_id, "data-gpu-action": gpu.healthy ? "fail" : "recover" },
      gpu.healthy ? `Fail ${gpu.gpu_id}` : `Recover ${gpu.gpu_id}`)),
    )));
  }

  function renderAllocations(a) {
    $("allocation-counts").textContent = Object.entries(a.by_state).map(([s, n]) => `${n} ${s}`).join(", ");
    fill($("allocations").tBodies[0], a.rows.map((r) => el("tr", { "data-key": r.allocation_id, class: r.leak ? "leak" : "" },
      el("th", { scope: "row" }, r.allocation_id),
      el("td", { class: "tenant" }, r.tenant_id),
      el("td", {}, r.pool_id),
      el("td", {}, r.gpu_id),
      el("td", { class: "model" }, r.model),
      el("td", { class: "num" }, num(r.tflops)),
      el("td", { class: "num" }, num(r.vram_mb)),
      stateCell(r.state),
      el("td", {}, duration(r.age_s)),
      el("td", {}, r.lease_left_s === null ? (r.ttl_seconds ? "ended" : "no lease") : duration(r.lease_left_s)),
      el("td", { class: "num" }, r.inflight),
      el("td", { class: "leak-mark" }, r.leak ? `⚠ ${LEAK_WORDS[r.leak]}` : "—"),
    )));
  }

  function renderLeaks(l) {
    $("leak-summary").textContent = `${l.count} leaks at ${num(l.grace_s)} s grace: ${l.still_active} still held, ` +
      `${l.expired_unreleased} expired without a release${l.count > l.rows.length ? ` (the oldest ${l.rows.length} shown)` : ""}.`;
    fill($("leaks").tBodies[0], l.rows.map((r) => el("tr", { "data-key": r.allocation_id, class: "leak" },
      el("th", { scope: "row" }, r.allocation_id),
      el("td", {}, r.tenant_id),
      el("td", {}, r.pool_id),
      stateCell(r.state),
      el("td", { class: "leak-mark" }, `⚠ ${LEAK_WORDS[r.reason]}`),
      el("td", {}, duration(r.age_s)),
    )));
  }

  function renderRules(rules) {
    fill($("rules").tBodies[0], rules.map((r) => el("tr", { "data-key": r.id },
      el("th", { scope: "row" }, r.id),
      el("td", {}, r.source || "api"),
      el("td", {}, r.match.operation),
      el("td", {}, r.phase),
      el("td", {}, describeAction(r.action)),
      el("td", { class: "num" }, `${num(r.probability * 100, 1)}%`),
      el("td", { class: "num" }, r.matched),
      el("td", { class: "num" }, r.fired),
      el("td", {}, el("button", { type: "button", "data-focus-key": `rule:${r.id}`, "data-rule": r.id }, `Remove ${r.id}`)),
    )));
    $("clear-faults").disabled = rules.length === 0;
  }

  function describeAction(action) {
    const rest = Object.entries(action).filter(([k]) => k !== "type").map(([k, v]) => `${k} ${v}`);
    return rest.length ? `${action.type} (${rest.join(", ")})` : action.type;
  }

  function renderJournal(j) {
    fill($("journal").tBodies[0], j.entries.map((e) => el("tr", { "data-key": String(e.seq) },
      el("th", { scope: "row", class: "num" }, e.seq),
      el("td", { class: "num" }, num(e.at, 3)),
      el("td", {}, e.operation),
      el("td", {}, `${e.method} ${e.path}`),
      el("td", {}, e.tenant_id || "—"),
      statusCell(e.status),
      el("td", {}, e.fault_id ? `${e.fault_id} (${e.fault_action})` : "—"),
      el("td", {}, e.allocation_id || "—"),
      el("td", { class: "num" }, num(e.duration_ms, 1)),
    )));
  }

  // ---- charts (SVG, drawn by hand) ---------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const H = 150;
  const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Axes and labels in the chart's own pixel size (its width follows the layout), so text is not
  // stretched; returns that width.
  function frame(svg, label, yMax, xLabels) {
    const W = svg.clientWidth || 400;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("aria-label", label);
    const bottom = H - PAD.bottom;
    svg.replaceChildren(
      svgEl("title", {}, label),
      svgEl("line", { class: "axis", x1: PAD.left, y1: bottom, x2: W - PAD.right, y2: bottom }),
      svgEl("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom }),
      svgEl("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, num(yMax, 1)),
      svgEl("text", { x: PAD.left - 4, y: bottom, "text-anchor": "end" }, "0"),
      ...xLabels(W).map(([x, text, anchor]) => svgEl("text", { x, y: H - 6, "text-anchor": anchor || "middle" }, text)),
    );
    return W;
  }

  function lineChart(svg, name, latency) {
    const p50 = latency.series[`${name}_p50_ms`];
    const p95 = latency.series[`${name}_p95_ms`];
    const n = p50.length;
    const yMax = Math.max(1, ...p95.filter((v) => v !== null));
    const seconds = n * latency.bin_s;
    const overall = latency[`${name}_p50_ms`];
    const label = overall === null
      ? `${name.toUpperCase()}: no inference answered in the last ${seconds} s`
      : `${name.toUpperCase()} over the last ${seconds} s: p50 ${num(overall, 1)} ms, p95 ${num(latency[`${name}_p95_ms`], 1)} ms`;
    const W = frame(svg, label, yMax, (w) => [[PAD.left, `−${seconds} s`, "start"], [w - PAD.right, "now", "end"]]);
    const x = (i) => PAD.left + (i / Math.max(1, n - 1)) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
    for (const [values, cls] of [[p50, "p50"], [p95, "p95"]]) {
      let d = "";
      values.forEach((v, i) => {
        if (v !== null) d += `${i > 0 && values[i - 1] !== null && d ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      });
      if (d) svg.append(svgEl("path", { class: cls, d }));
    }
  }

  function histogram(svg, name, latency) {
    const counts = latency[`${name}_histogram`];
    const edges = latency.edges_ms;
    const total = counts.reduce((a, b) => a + b, 0);
    const yMax = Math.max(1, ...counts);
    const busiest = counts.indexOf(Math.max(...counts));
    const label = total === 0 ? `${name.toUpperCase()} histogram: empty`
      : `${name.toUpperCase()} histogram of ${total} inferences; the most fall at or below ${edges[Math.min(busiest, edges.length - 1)]} ms`;
    const slot = (w) => (w - PAD.left - PAD.right) / counts.length;
    const W = frame(svg, label, yMax, (w) => edges.flatMap((edge, i) => (i % 5 === 0
      ? [[PAD.left + (i + 1) * slot(w), edge >= 1000 ? `${edge / 1000} s` : `${edge} ms`]] : [])));
    const width = slot(W);
    counts.forEach((c, i) => {
      if (!c) return;
      const h = (c / yMax) * (H - PAD.top - PAD.bottom);
      svg.append(svgEl("rect", { class: "hist", x: PAD.left + i * width + 1, y: H - PAD.bottom - h, width: Math.max(1, width - 2), height: h }));
    });
  }

  function renderLatency(latency) {
    const show = (v) => (v === null ? "—" : `${num(v, 1)} ms`);
    $("latency-summary").textContent = `${num(latency.observed)} inferences answered since the last reset. ` +
      `Last ${latency.series.count.length * latency.bin_s} s: TTFT p50 ${show(latency.ttft_p50_ms)}, p95 ${show(latency.ttft_p95_ms)}; ` +
      `ITL p50 ${show(latency.itl_p50_ms)}, p95 ${show(latency.itl_p95_ms)}.`;
    lineChart($("ttft-series"), "ttft", latency);
    lineChart($("itl-series"), "itl", latency);
    histogram($("ttft-histogram"), "ttft", latency);
    histogram($("itl-histogram"), "itl", latency);
  }

  // ---- controls ------------------------------------------------------------------------------------

  function changeView(changes) {
    Object.assign(view, changes);
    refresh().catch(() => {});
    connect();
  }

  function wire() {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value;
      $("token").value = "";
      sessionStorage.setItem(TOKEN_KEY, token);
      $("login-error").textContent = "";
      signIn();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("advance").addEventListener("click", (event) => {
      const seconds = event.target.dataset && event.target.dataset.advance;
      if (seconds) act(`Advanced the clock ${seconds} s.`, () => admin("POST", "/_admin/clock/advance", { seconds: Number(seconds) }));
    });
    $("advance").addEventListener("submit", (event) => {
      event.preventDefault();
      const seconds = Number($("advance-seconds").value);
      act(`Advanced the clock ${seconds} s.`, () => admin("POST", "/_admin/clock/advance", { seconds }));
    });
    $("gpu-pool").addEventListener("change", (e) => changeView({ pool_id: e.target.value, gpu_offset: 0 }));
    $("gpu-sort").addEventListener("change", (e) => changeView({ gpu_sort: e.target.value, gpu_offset: 0 }));
    $("gpu-prev").addEventListener("click", () => changeView({ gpu_offset: Math.max(0, view.gpu_offset - PAGE) }));
    $("gpu-next").addEventListener("click", () => changeView({ gpu_offset: view.gpu_offset + PAGE }));
    $("gpus").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-gpu]");
      if (!button) return;
      const { gpu, gpuAction } = button.dataset;
      act(`${gpuAction === "fail" ? "Failed" : "Recovered"} ${gpu}.`,
        () => admin("POST", `/_admin/gpus/${encodeURIComponent(gpu)}/${gpuAction}`));
    });
    $("allocation-state").addEventListener("change", (e) => changeView({ allocation_state: e.target.value }));
    $("leak-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      changeView({ leak_grace_s: $("leak-grace").value });
    });
    $("scenario").addEventListener("change", describeScenario);
    $("scenario-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("scenario").value;
      act(`Applied the scenario ${name}.`, () => admin("POST", `/_admin/scenarios/${encodeURIComponent(name)}`));
    });
    $("clear-faults").addEventListener("click", () => act("Cleared every fault rule.", () => admin("DELETE", "/_admin/faults")));
    $("rules").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-rule]");
      if (button) act(`Removed ${button.dataset.rule}.`, () => admin("DELETE", `/_admin/faults/${encodeURIComponent(button.dataset.rule)}`));
    });
    $("journal-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      changeView({ journal_operation: $("journal-operation").value, journal_status: $("journal-status").value,
        journal_tenant_id: $("journal-tenant").value.trim() });
    });
    const savedKey = sessionStorage.getItem(API_KEY);
    if (savedKey) $("api-key").value = savedKey;
    $("allocate-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const ttl = $("allocate-ttl").value;
      const body = {
        pool_id: $("allocate-pool").value,
        requirements: { tflops: Number($("allocate-tflops").value), vram_mb: Number($("allocate-vram").value),
          model: $("allocate-model").value.trim() },
        overcommit: $("allocate-overcommit").checked,
      };
      if (ttl) body.ttl_seconds = Number(ttl);
      tenantCall("POST", "/v1/allocate", body, (a) => {
        $("release-id").value = a.allocation_id;
        return `Allocated ${a.allocation_id} for ${a.tenant_id} on ${a.gpu_id}.`;
      });
    });
    $("release-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("release-id").value.trim();
      tenantCall("DELETE", `/v1/allocate/${encodeURIComponent(id)}`, undefined, () => `Released ${id}.`);
    });
  }

  // The public API, as a tenant: the journal records these like any client's requests.
  async function tenantCall(method, path, body, describe) {
    const key = $("api-key").value;
    sessionStorage.setItem(API_KEY, key);
    const headers = { Authorization: `Bearer ${key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      const response = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      const data = text ? JSON.parse(text) : null;
      if (response.ok) say(describe(data));
      else say(`${method} ${path} answered ${response.status}${data && data.code ? ` ${data.code}: ${data.detail}` : ""}`, true);
      await refresh();
    } catch (error) {
      if (error.message !== "unauthorized") say(`${method} ${path} failed: ${error.message}`, true);
    }
  }

  wire();
  if (token) signIn();
  else signOut("");
})();
