// Ancho's web page: the user's runs and one run's summary, from the REST API.
//
// Views, chosen by the URL's "#" part: "#/" the runs and experiments, "#/runs/<id>" one
// run, "#/experiments/<id>" one experiment's points; the sign-in form whenever no token
// is stored. The token lives in localStorage and goes with every
// API call as "Authorization: Bearer"; a 401 forgets it and asks again. Every value from
// the API is written as text (textContent, SVG attributes), never parsed as HTML.
// Lists refresh every POLL_MS while a run shown is active; a run's summary and
// histograms load once it has ended.
"use strict";

(() => {
  const TOKEN_KEY = "ancho.token";
  const POLL_MS = 2000;
  const RETRY_MS = 5000;
  const TERMINAL = new Set(["FINISHED", "FAILED", "KILLED"]);
  const STATS = ["count", "mean", "stddev", "sem", "min", "max", "skewness", "kurtosis"];
  const QUANTILES = ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"];
  const MAX_LOG_LINES = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- formatting

  /** A number as Python's "{:.6g}" writes it (as `ancho summary --format table`). */
  function fmtNum(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (!Number.isFinite(v)) return String(v);
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const [mantissa, expText] = v.toExponential(5).split("e");
    const exp = Number(expText);
    const trim = (s) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
    if (exp < -4 || exp >= 6) {
      const sign = exp < 0 ? "-" : "+";
      return `${trim(mantissa)}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
    }
    return trim(v.toFixed(5 - exp));
  }

  /** An integer with thousands separators ("{:,}"). */
  function fmtInt(v) {
    if (v === null || v === undefined) return "–";
    return Number(v).toLocaleString("en-US");
  }

  /** A Unix time in seconds as local date and time. */
  function fmtTime(ts) {
    if (ts === null || ts === undefined || ts === 0) return "–";
    return new Date(ts * 1000).toLocaleString();
  }

  function fmtDuration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  // ---------------------------------------------------------------- DOM helpers

  /** An element with properties (dataset and attrs merged specially) and children. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "attrs") for (const [a, v] of Object.entries(value)) node.setAttribute(a, v);
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [a, v] of Object.entries(attrs)) node.setAttribute(a, String(v));
    for (const child of children) node.append(child);
    return node;
  }

  function stateBadge(state) {
    return el("span", { className: `state state-${state}`, textContent: state,
                        dataset: { state } });
  }

  /** ok (green) and failed (red) of total, with "ok+failed / total" beside it. */
  function progressBar(counts) {
    const total = counts.total || 0;
    const done = counts.ok + counts.failed;
    const pct = (n) => (total > 0 ? `${(100 * n) / total}%` : "0%");
    const ok = el("span", { className: "progress-ok" });
    ok.style.width = pct(counts.ok);
    const failed = el("span", { className: "progress-failed" });
    failed.style.width = pct(counts.failed);
    const label = el("span", { className: "progress-label" }, `${fmtInt(done)} / ${fmtInt(total)}`);
    if (counts.failed > 0) {
      label.append(" ", el("span", { className: "failed" }, `(${fmtInt(counts.failed)} failed)`));
    }
    return el(
      "div",
      {
        className: "progress",
        attrs: { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(total),
                 "aria-valuenow": String(done) },
        dataset: { ok: String(counts.ok), failed: String(counts.failed), total: String(total) },
      },
      el("span", { className: "progress-track" }, ok, failed),
      label,
    );
  }

  function showBanner(message) {
    $("banner").textContent = message;
    $("banner").hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, message, details) {
      super(message);
      this.status = status;
      this.details = details || [];
    }
  }

  function token() {
    return localStorage.getItem(TOKEN_KEY);
  }

  /** The response text of GET path, or ApiError (status 0: the server is unreachable). */
  async function request(path, { method = "GET", bearer = token() } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${bearer}`, Accept: "application/json" },
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, `cannot reach the server (${err.message})`);
    }
    const text = await response.text();
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let details = [];
      try {
        const body = JSON.parse(text);
        if (body && body.error) message = body.error;
        if (body && Array.isArray(body.details)) details = body.details;
      } catch (_) {
        // not JSON: keep the status line
      }
      throw new ApiError(response.status, message, details);
    }
    return text;
  }

  async function api(path, options) {
    return JSON.parse(await request(path, options));
  }

  const runPath = (id) => `/api/v1/runs/${encodeURIComponent(id)}`;

  function describe(err) {
    const details = (err.details || []).map((d) => `${d.path}: ${d.message}`).join("; ");
    return details ? `${err.message}: ${details}` : err.message;
  }

  // ---------------------------------------------------------------- routing

  // Each view change bumps `generation`; late answers of an older view are dropped.
  let generation = 0;
  let timer = null;

  function current(gen) {
    return gen === generation;
  }

  function later(gen, fn, ms = POLL_MS) {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (current(gen)) fn();
    }, ms);
  }

  function route() {
    generation += 1;
    clearTimeout(timer);
    hideBanner();
    for (const id of ["login-view", "runs-view", "run-view", "experiment-view"]) {
      $(id).hidden = true;
    }
    if (!token()) {
      $("nav").hidden = true;
      $("login-view").hidden = false;
      $("token-input").focus();
      return;
    }
    $("nav").hidden = false;
    const run = location.hash.match(/^#\/runs\/([^/?#]+)$/);
    const experiment = location.hash.match(/^#\/experiments\/([^/?#]+)$/);
    if (run) openRun(decodeURIComponent(run[1]), generation);
    else if (experiment) openExperiment(decodeURIComponent(experiment[1]), generation);
    else openRuns(generation);
  }

  /** Forget the token and show the sign-in form (with `message` when given). */
  function logout(message) {
    localStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
    route();
  }

  /** Handle an API failure of the view `gen`: 401 signs out; else a banner and a retry. */
  function failed(gen, err, retry) {
    if (!current(gen)) return;
    if (err.status === 401) {
      logout(`Your token was refused (${err.message}). Sign in again.`);
      return;
    }
    showBanner(describe(err));
    if (retry) later(gen, retry, RETRY_MS);
  }

  // ---------------------------------------------------------------- sign in

  async function signIn(event) {
    event.preventDefault();
    const candidate = $("token-input").value.trim();
    if (!candidate) return;
    $("login-button").disabled = true;
    $("login-error").hidden = true;
    try {
      await api("/api/v1/runs", { bearer: candidate });
      localStorage.setItem(TOKEN_KEY, candidate);
      $("token-input").value = "";
      if (!/^#\/(runs|experiments)\//.test(location.hash)) location.hash = "#/";
      route();
    } catch (err) {
      const message = err.status === 401 ? `That token was refused: ${err.message}.`
                                         : describe(err);
      $("login-error").textContent = message;
      $("login-error").hidden = false;
    } finally {
      $("login-button").disabled = false;
    }
  }

  // ---------------------------------------------------------------- the runs

  async function openRuns(gen) {
    $("runs-view").hidden = false;
    let runs, experiments;
    try {
      [runs, experiments] = await Promise.all([
        api("/api/v1/runs").then((r) => r.runs),
        api("/api/v1/experiments").then((r) => r.experiments),
      ]);
    } catch (err) {
      failed(gen, err, () => openRuns(gen));
      return;
    }
    if (!current(gen)) return;
    hideBanner();
    renderRuns(runs);
    renderExperiments(experiments);
    const active = runs.filter((r) => !TERMINAL.has(r.state)).length;
    const time = new Date().toLocaleTimeString();
    $("runs-status").textContent = active
      ? `${active} active · refreshing every ${POLL_MS / 1000} s · ${time}`
      : `updated ${time}`;
    if (active) later(gen, () => openRuns(gen));
  }

  function renderRuns(runs) {
    const body = $("runs-table").tBodies[0];
    body.replaceChildren(
      ...runs.map((r) => {
        const href = `#/runs/${encodeURIComponent(r.id)}`;
        const row = el(
          "tr",
          { className: "run-row", dataset: { runId: r.id, state: r.state } },
          el("td", { className: "mono" }, el("a", { href, textContent: r.id })),
          el("td", { className: "run-name" }, r.name || ""),
          el("td", { className: "run-state" }, stateBadge(r.state)),
          el("td", {}, progressBar(r.counts)),
          el("td", { title: r.created_at ? new Date(r.created_at * 1000).toISOString() : "" },
             fmtTime(r.created_at)),
        );
        row.addEventListener("click", (event) => {
          if (!event.target.closest("a")) location.hash = href;
        });
        return row;
      }),
    );
    $("runs-table").hidden = runs.length === 0;
    $("runs-empty").hidden = runs.length !== 0;
  }

  function renderExperiments(experiments) {
    $("experiments-table").tBodies[0].replaceChildren(
      ...experiments.map((e) => {
        const href = `#/experiments/${encodeURIComponent(e.id)}`;
        return el(
          "tr",
          { className: "experiment-row", dataset: { experimentId: e.id } },
          el("td", { className: "mono" }, el("a", { href, textContent: e.id })),
          el("td", {}, e.name || ""),
          el("td", { className: "experiment-points" }, fmtInt(e.points.length)),
          el("td", {}, fmtTime(e.created_at)),
        );
      }),
    );
    $("experiments-table").hidden = experiments.length === 0;
    $("experiments-empty").hidden = experiments.length !== 0;
  }

  // ---------------------------------------------------------------- one experiment

  /** The parameters whose values differ between points, in the order they appear. */
  function sweptParameters(points) {
    const names = [...new Set(points.flatMap((p) => Object.keys(p.parameters)))];
    return names.filter(
      (n) => new Set(points.map((p) => JSON.stringify(p.parameters[n]))).size > 1,
    );
  }

  async function openExperiment(id, gen) {
    $("experiment-view").hidden = false;
    let doc;
    try {
      doc = await api(`/api/v1/experiments/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 404 && current(gen)) {
        $("experiment-name").textContent = "No such experiment";
        $("points-table").tHead.replaceChildren();
        $("points-table").tBodies[0].replaceChildren();
        showBanner(`${err.message}: it is not one of your experiments.`);
        return;
      }
      failed(gen, err, () => openExperiment(id, gen));
      return;
    }
    if (!current(gen)) return;
    hideBanner();
    renderExperiment(doc);
    if (!TERMINAL.has(doc.state)) later(gen, () => openExperiment(id, gen));
  }

  /** One row per point: the swept parameters, each output's mean ± 95% half-width, the
   *  run (a link to it) and its state. */
  function renderExperiment(doc) {
    document.title = `${doc.name || doc.experiment} · Ancho`;
    $("experiment-name").textContent = doc.name || doc.experiment;
    $("experiment-id").textContent = `experiment ${doc.experiment}`;
    $("experiment-state").replaceWith(
      Object.assign(stateBadge(doc.state), { id: "experiment-state" }),
    );
    const swept = sweptParameters(doc.points);
    const outputs = [...new Set(doc.points.flatMap(
      (p) => Object.keys((p.summary && p.summary.outputs) || {}),
    ))];
    const done = doc.points.filter((p) => TERMINAL.has(p.state)).length;
    $("experiment-note").textContent = `${fmtInt(done)} of ${fmtInt(doc.points.length)} points `
      + `done; swept: ${swept.join(", ") || "nothing"}; each output's mean ± the half-width `
      + "of its 95% interval (1.96 sem).";
    $("points-table").tHead.replaceChildren(el("tr", {},
      ...["point", ...swept, ...outputs, "run", "state"].map((c) => el("th", {}, c))));
    $("points-table").tBodies[0].replaceChildren(...doc.points.map((point, i) => {
      const stats = (point.summary && point.summary.outputs) || {};
      const estimate = (name) => {
        const s = stats[name];
        if (!s || s.mean === null || s.mean === undefined) return "–";
        if (s.sem === null || s.sem === undefined) return fmtNum(s.mean);
        return `${fmtNum(s.mean)} ± ${fmtNum(Number((1.959964 * s.sem).toPrecision(2)))}`;
      };
      const value = (v) => (typeof v === "number" ? fmtNum(v) : JSON.stringify(v) ?? "–");
      return el(
        "tr",
        { className: "point-row", dataset: { point: String(i), run: point.run } },
        el("td", {}, String(i)),
        ...swept.map((n) => el("td", { dataset: { parameter: n } },
          typeof point.parameters[n] === "string" ? point.parameters[n]
                                                   : value(point.parameters[n]))),
        ...outputs.map((n) => el("td", {
          dataset: { output: n, mean: stats[n] ? String(stats[n].mean) : "" },
        }, estimate(n))),
        el("td", { className: "mono" },
           el("a", { href: `#/runs/${encodeURIComponent(point.run)}`, textContent: point.run })),
        el("td", {}, stateBadge(point.state)),
      );
    }));
  }

  // ---------------------------------------------------------------- one run

  // What the open run's view has loaded: its id, the last log line, the summary.
  let shown = { id: null, logsAfter: 0, summary: null };

  function resetRunView(id) {
    shown = { id, logsAfter: 0, summary: null };
    for (const key of ["run-name", "run-id", "run-state", "summary-note", "histograms-note",
                       "convergence-note", "logs", "logs-count"]) {
      $(key).textContent = "";
    }
    for (const key of ["run-progress", "run-facts", "histograms", "convergence"]) {
      $(key).replaceChildren();
    }
    $("summary-table").tHead.replaceChildren();
    $("summary-table").tBodies[0].replaceChildren();
    $("summary-table").hidden = true;
    $("summary-custom").hidden = true;
    $("run-reason").hidden = true;
    $("run-kill").hidden = true;
  }

  async function openRun(id, gen) {
    $("run-view").hidden = false;
    if (shown.id !== id) resetRunView(id);
    let run;
    try {
      run = await api(runPath(id));
    } catch (err) {
      if (err.status === 404 && current(gen)) {
        $("run-name").textContent = "No such run";
        showBanner(`${err.message}: it is not one of your runs.`);
        return;
      }
      failed(gen, err, () => openRun(id, gen));
      return;
    }
    if (!current(gen)) return;
    hideBanner();
    renderRun(run);
    await loadLogs(id, gen);
    if (!current(gen)) return;
    if (run.state !== "QUEUED" && run.state !== "STAGING") await loadConvergence(id, gen);
    if (!current(gen)) return;
    if (TERMINAL.has(run.state)) {
      if (shown.summary === null) await loadSummary(run, gen);
    } else {
      $("summary-note").textContent = "The summary is computed when every sequence is done.";
      $("histograms-note").textContent = "Histograms appear when the run has ended.";
      later(gen, () => openRun(id, gen));
    }
  }

  function renderRun(run) {
    document.title = `${run.name || run.id} · Ancho`;
    $("run-name").textContent = run.name || run.id;
    $("run-id").textContent = `run ${run.id}`;
    $("run-state").replaceWith(
      Object.assign(stateBadge(run.state), { id: "run-state" }),
    );
    $("run-progress").replaceChildren(progressBar(run.counts));
    const c = run.counts;
    const facts = [
      ["total", fmtInt(c.total)],
      ["ok", fmtInt(c.ok)],
      ["failed", fmtInt(c.failed)],
      ["running", fmtInt(c.running)],
      ["seed", String(run.seed)],
      ["outputs", (run.outputs || []).join(", ") || "–"],
      ["created", fmtTime(run.created_at)],
      ["started", fmtTime(run.started_at)],
      ["finished", fmtTime(run.finished_at)],
    ];
    if (run.started_at && run.finished_at) {
      facts.push(["took", fmtDuration(run.finished_at - run.started_at)]);
    }
    $("run-facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { dataset: { fact: k } }, v)]),
    );
    $("run-reason").textContent = run.reason ? `reason: ${run.reason}` : "";
    $("run-reason").hidden = !run.reason;
    $("run-kill").hidden = TERMINAL.has(run.state);
  }

  async function killRun() {
    const id = shown.id;
    if (!id || !window.confirm(`Kill run ${id}? Its batches stop within a second.`)) return;
    const gen = generation;
    try {
      await request(runPath(id), { method: "DELETE" });
    } catch (err) {
      failed(gen, err, null);
      return;
    }
    if (current(gen)) openRun(id, gen);
  }

  async function loadLogs(id, gen) {
    let text;
    try {
      text = await request(`${runPath(id)}/logs?after=${shown.logsAfter}`);
    } catch (err) {
      if (current(gen)) $("logs-count").textContent = `(${describe(err)})`;
      return;
    }
    if (!current(gen) || shown.id !== id) return;
    const lines = text.split("\n").filter((line) => line.trim());
    if (lines.length === 0) return;
    const out = $("logs");
    for (const line of lines) {
      let event;
      try {
        event = JSON.parse(line);
      } catch (_) {
        continue;
      }
      shown.logsAfter = Math.max(shown.logsAfter, event.id || 0);
      const when = new Date(event.ts * 1000).toLocaleTimeString();
      out.append(`${when} ${event.level} ${event.source}: ${event.message}\n`);
    }
    while (out.childNodes.length > MAX_LOG_LINES) out.firstChild.remove();
    $("logs-count").textContent = `(${fmtInt(out.childNodes.length)} lines)`;
  }

  // ---------------------------------------------------------------- summary

  async function loadSummary(run, gen) {
    let summary;
    try {
      summary = await api(`${runPath(run.id)}/summary`);
    } catch (err) {
      failed(gen, err, () => openRun(run.id, gen));
      return;
    }
    if (!current(gen)) return;
    shown.summary = summary;
    renderSummary(summary);
    await loadHistograms(run.id, Object.keys(summary.outputs || {}), gen);
  }

  function renderSummary(summary) {
    const outputs = Object.entries(summary.outputs || {});
    if (outputs.length === 0) {
      $("summary-note").textContent = `No summary: the run ended ${summary.state} with `
        + `${fmtInt(summary.ok)} ok sequences.`;
      $("summary-table").hidden = true;
    } else {
      $("summary-note").textContent = `${fmtInt(summary.ok)} ok and ${fmtInt(summary.failed)} `
        + `failed of ${fmtInt(summary.sequences)} sequences; statistics over the ok ones.`;
      const columns = [...STATS, ...QUANTILES.map((q) => `q${q}`)];
      $("summary-table").tHead.replaceChildren(
        el("tr", {}, el("th", {}, "output"), ...columns.map((c) => el("th", {}, c))),
      );
      $("summary-table").tBodies[0].replaceChildren(
        ...outputs.map(([name, stats]) => {
          const quantiles = stats.quantiles || {};
          const cell = (stat, value, text) => el("td", {
            dataset: { stat, value: value === null || value === undefined ? "" : String(value) },
            title: value === null || value === undefined ? "no finite value" : String(value),
          }, text);
          return el(
            "tr",
            { dataset: { output: name } },
            el("th", { attrs: { scope: "row" } }, name),
            ...STATS.map((s) => cell(s, stats[s], s === "count" ? fmtInt(stats[s]) : fmtNum(stats[s]))),
            ...QUANTILES.map((q) => cell(`q${q}`, quantiles[q], fmtNum(quantiles[q]))),
          );
        }),
      );
      $("summary-table").hidden = false;
    }
    const custom = summary.custom || {};
    $("summary-custom").textContent = `custom: ${JSON.stringify(custom, null, 2)}`;
    $("summary-custom").hidden = Object.keys(custom).length === 0;
  }

  // ---------------------------------------------------------------- histograms

  async function loadHistograms(id, outputs, gen) {
    const bins = $("bins").value;
    if (outputs.length === 0) {
      $("histograms-note").textContent = "No histograms: the run has no summarised outputs.";
      $("histograms").replaceChildren();
      return;
    }
    $("histograms-note").textContent = "Counting…";
    const figures = await Promise.all(outputs.map(async (name) => {
      const query = `output=${encodeURIComponent(name)}&bins=${encodeURIComponent(bins)}`;
      try {
        return drawHistogram(await api(`${runPath(id)}/histogram?${query}`));
      } catch (err) {
        if (err.status === 401) throw err;
        return el("figure", { className: "histogram-figure", dataset: { output: name } },
                  el("figcaption", {}, name), el("p", { className: "error" }, describe(err)));
      }
    })).catch((err) => {
      failed(gen, err, null);
      return null;
    });
    if (figures === null || !current(gen)) return;
    $("histograms").replaceChildren(...figures);
    $("histograms-note").textContent = "Counts of the ok sequences' values in equal-width "
      + "bins; hover a bar for its range.";
  }

  /** The plot area of a chart: a 640-wide SVG of height H, margins for the axes. */
  function chartFrame(H) {
    const W = 640;
    const left = 76;
    const right = 12;
    const top = 12;
    const bottom = 30;
    return { W, H, left, right, top, plotW: W - left - right, plotH: H - top - bottom };
  }

  /** A figure with the histogram `h` (the API's document) as an SVG bar chart. */
  function drawHistogram(h) {
    const caption = el("figcaption", {}, h.output, " ",
                       el("span", { className: "muted" }, `n = ${fmtInt(h.count)}`));
    if (h.skipped > 0) {
      caption.append(el("span", { className: "muted" },
                        ` · ${fmtInt(h.skipped)} missing or non-finite not shown`));
    }
    const figure = el("figure", { className: "histogram-figure", dataset: { output: h.output } },
                      caption);
    if (h.counts.length === 0) {
      figure.append(el("p", { className: "muted" }, "No finite values."));
      return figure;
    }
    const { W, H, left, right, top, plotW, plotH } = chartFrame(240);
    const peak = Math.max(...h.counts, 1);
    const step = plotW / h.counts.length;
    const gap = step > 4 ? 1 : 0;
    const chart = svg("svg", {
      class: "histogram",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `histogram of ${h.output}: ${h.count} values in ${h.counts.length} bins`,
      "data-output": h.output,
      "data-count": h.count,
      "data-bins": h.counts.length,
    });
    const bars = svg("g", { class: "bars" });
    h.counts.forEach((count, i) => {
      const height = (count / peak) * plotH;
      const lo = h.edges[i];
      const hi = h.edges[i + 1];
      const closing = i === h.counts.length - 1 ? "]" : ")";
      bars.append(svg(
        "rect",
        {
          class: "bar",
          x: left + i * step,
          y: top + plotH - height,
          width: Math.max(step - gap, 0.5),
          height,
          "data-count": count,
          "data-lo": lo,
          "data-hi": hi,
        },
        svg("title", {}, document.createTextNode(
          `[${fmtNum(lo)}, ${fmtNum(hi)}${closing}: ${fmtInt(count)}`)),
      ));
    });
    const text = (x, y, anchor, value) => svg(
      "text", { x, y, "text-anchor": anchor }, document.createTextNode(value));
    const lo = h.edges[0];
    const hi = h.edges[h.edges.length - 1];
    chart.append(
      bars,
      svg("line", { class: "axis", x1: left, y1: top + plotH, x2: W - right, y2: top + plotH }),
      svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }),
      text(left - 6, top + 10, "end", fmtInt(peak)),
      text(left - 6, top + plotH, "end", "0"),
      text(left, H - 10, "start", fmtNum(lo)),
      text(left + plotW / 2, H - 10, "middle", fmtNum((lo + hi) / 2)),
      text(W - right, H - 10, "end", fmtNum(hi)),
    );
    figure.append(chart);
    return figure;
  }

  // ---------------------------------------------------------------- convergence

  async function loadConvergence(id, gen) {
    let doc;
    try {
      doc = await api(`${runPath(id)}/convergence`);
    } catch (err) {
      failed(gen, err, () => loadConvergence(id, gen));
      return;
    }
    if (!current(gen)) return;
    const names = Object.keys(doc.outputs).filter((n) => doc.outputs[n].length > 0);
    if (names.length === 0) {
      $("convergence-note").textContent = "The first blocks of sequences are on their way.";
      return;
    }
    $("convergence").replaceChildren(...names.map((n) => drawConvergence(n, doc.outputs[n])));
    $("convergence-note").textContent = "Each output's mean and 95% band over sequences "
      + "0..k-1, as blocks of sequences come in.";
  }

  /** The mean (a line) and its 95% band (an area) against sequences. */
  function drawConvergence(name, points) {
    const { W, H, left, right, top, plotW, plotH } = chartFrame(220);
    const last = points[points.length - 1];
    const ys = points.flatMap(([, mean, lo, hi]) => [mean, lo, hi]).filter(
      (v) => v !== null && Number.isFinite(v));
    let yLo = Math.min(...ys);
    let yHi = Math.max(...ys);
    if (!(yHi > yLo)) {
      yLo -= 0.5;
      yHi += 0.5;
    }
    const kHi = Math.max(last[0], 1);
    const x = (k) => left + (k / kHi) * plotW;
    const y = (v) => top + plotH - ((v - yLo) / (yHi - yLo)) * plotH;
    const banded = points.filter(([, , lo, hi]) => lo !== null && hi !== null);
    const band = banded.map(([k, , , hi]) => `${x(k)},${y(hi)}`)
      .concat(banded.slice().reverse().map(([k, , lo]) => `${x(k)},${y(lo)}`));
    const line = points.filter(([, mean]) => mean !== null).map(([k, mean]) => `${x(k)},${y(mean)}`);
    const chart = svg("svg", {
      class: "convergence",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `mean of ${name} and its 95% band against sequences, up to ${last[0]}`,
      "data-output": name,
      "data-points": points.length,
      "data-last-k": last[0],
      "data-last-mean": last[1] === null ? "" : last[1],
    });
    const text = (tx, ty, anchor, value) => svg(
      "text", { x: tx, y: ty, "text-anchor": anchor }, document.createTextNode(value));
    chart.append(
      svg("polygon", { class: "band", points: band.join(" ") }),
      svg("polyline", { class: "mean", points: line.join(" ") }),
      svg("line", { class: "axis", x1: left, y1: top + plotH, x2: W - right, y2: top + plotH }),
      svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }),
      text(left - 6, top + 10, "end", fmtNum(yHi)),
      text(left - 6, top + plotH, "end", fmtNum(yLo)),
      text(left, H - 10, "start", "0"),
      text(W - right, H - 10, "end", `${fmtInt(last[0])} sequences`),
    );
    const mean = last[1] === null ? "–" : fmtNum(last[1]);
    const half = last[2] === null ? "" : ` ± ${fmtNum((last[3] - last[2]) / 2)}`;
    return el("figure", { className: "convergence-figure", dataset: { output: name } },
              el("figcaption", {}, name, " ", el("span", { className: "muted" },
                                                   `${mean}${half} at ${fmtInt(last[0])}`)),
              chart);
  }

  // ---------------------------------------------------------------- start

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("logout").addEventListener("click", (event) => {
      event.preventDefault();
      logout("");
    });
    $("refresh").addEventListener("click", route);
    $("run-kill").addEventListener("click", killRun);
    $("bins").addEventListener("change", () => {
      if (shown.id && shown.summary) {
        loadHistograms(shown.id, Object.keys(shown.summary.outputs || {}), generation);
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && token()) route();
    });
    window.addEventListener("hashchange", route);
    window.addEventListener("storage", (event) => {
      if (event.key === TOKEN_KEY) route();  // signed in or out in another tab
    });
    route();
  });
})();
