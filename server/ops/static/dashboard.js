// The operators' dashboard: signs in, reads GET /api/v1/dashboard every few seconds,
// draws it, and runs the operator actions. Plain JavaScript, no library, no build step.
//
// Rules kept throughout:
// - every value from the API reaches the page through textContent or setAttribute
//   (never innerHTML), so nothing it contains can become markup;
// - amounts are decimal strings and are shown exactly as given; amounts of different
//   currencies are never added together. The chart converts them to numbers only to
//   size the bars; its labels are the strings from the API.
"use strict";

(() => {
  const API = "/api/v1";
  const KEYS = { access: "gateway.access_token", refresh: "gateway.refresh_token",
                 user: "gateway.username" };
  const WINDOWS = { "24h": 24, "7d": 7 * 24, "30d": 30 * 24 };   // hours
  const RECENT_PAYMENTS = 10;
  const SMS_DAYS = 7;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  const refreshSeconds = (() => {
    const value = Number(new URLSearchParams(location.search).get("refresh"));
    return Number.isFinite(value) && value >= 0.5 && value <= 3600 ? value : 10;
  })();

  const state = {
    timer: null,          // the next automatic refresh
    loading: false,
    reloadWanted: false,  // a refresh was asked for while one was running
    signedIn: false,
    currencies: new Set(),
    action: null,         // the operator action the dialog is asking about
  };

  const $ = (id) => document.getElementById(id);

  // --- small DOM helpers (text only) --------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "data") {
        for (const [key, item] of Object.entries(value)) {
          if (item !== null && item !== undefined) node.dataset[key] = String(item);
        }
      } else if (name === "on") {
        for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      } else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (name === "data") {
        for (const [key, item] of Object.entries(value)) node.dataset[key] = String(item);
      } else node.setAttribute(name, String(value));
    }
    append(node, children);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function setMessage(node, text) {
    node.textContent = text || "";
    show(node, Boolean(text));
  }

  // A table: columns are {label, cls?, cell(row) -> Node|string}; rowAttrs(row) -> attrs.
  function table(columns, rows, { empty = "Nothing here.", rowAttrs = () => ({}) } = {}) {
    if (!rows.length) return el("p", { class: "empty" }, empty);
    return el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.cls, scope: "col" },
                                                           c.label)))),
      el("tbody", {}, rows.map((row) => el("tr", rowAttrs(row),
        columns.map((c) => el("td", { class: c.cls }, c.cell(row))))))));
  }

  // --- formatting ---------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function clock(date) {
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function localTime(iso, { seconds = false } = {}) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    const time = seconds ? clock(d) : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return `${day} ${time}`;
  }

  function age(iso) {
    const ms = Date.now() - new Date(iso).getTime();
    if (!Number.isFinite(ms)) return "";
    const minutes = Math.max(0, Math.floor(ms / 60000));
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min ago`;
    return `${Math.floor(hours / 24)} days ago`;
  }

  function when(iso) {
    return el("span", { title: localTime(iso, { seconds: true }) },
              localTime(iso), el("span", { class: "age" }, age(iso)));
  }

  function money(amount, currency) {
    return el("span", { class: "money" }, el("span", { class: "amount" }, amount ?? "—"),
              " ", el("span", { class: "currency" }, currency ?? ""));
  }

  function ratio(value) {
    if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
    const percent = value * 100;
    const cls = value >= 0.95 ? "good" : value >= 0.8 ? "fair" : "bad";
    return el("span", { class: `rate ${cls}` }, `${percent.toFixed(percent % 1 ? 1 : 0)}%`);
  }

  function errorRatio(value) {
    if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
    const percent = value * 100;
    const cls = value === 0 ? "good" : value < 0.1 ? "fair" : "bad";
    return el("span", { class: `rate ${cls}` }, `${percent.toFixed(percent % 1 ? 1 : 0)}%`);
  }

  function ms(value) { return value === null || value === undefined ? "—" : `${value} ms`; }

  function shortId(id) {
    const text = String(id ?? "");
    return el("code", { title: text }, text.length > 13 ? `${text.slice(0, 8)}…` : text);
  }

  // --- the API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }
  class SignedOut extends Error {}

  async function errorOf(answer) {
    let body = null;
    try { body = await answer.json(); } catch { /* not JSON */ }
    const error = body && body.error;
    if (!error || typeof error.message !== "string") {
      return new ApiError(answer.status, `the gateway answered HTTP ${answer.status}`, null);
    }
    let message = error.message;
    const fields = error.details && error.details.fields;
    if (fields && typeof fields === "object") {
      const parts = Object.entries(fields).map(([name, problems]) =>
        `${name}: ${Array.isArray(problems) ? problems.join(" ") : JSON.stringify(problems)}`);
      if (parts.length) message += ` (${parts.join("; ")})`;
    }
    return new ApiError(answer.status, message, error.code);
  }

  function send(method, path, { body, params, token } = {}) {
    const url = new URL(API + path, location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    return fetch(url, { method, headers, cache: "no-store", credentials: "omit",
                        body: body === undefined ? undefined : JSON.stringify(body) });
  }

  let refreshing = null;   // one refresh at a time, shared by concurrent callers

  function refreshTokens() {
    if (!refreshing) {
      refreshing = (async () => {
        const refresh = sessionStorage.getItem(KEYS.refresh);
        if (!refresh) return { ok: false, message: null };
        const answer = await send("POST", "/auth/refresh", { body: { refresh_token: refresh } });
        if (!answer.ok) return { ok: false, message: (await errorOf(answer)).message };
        storeTokens(await answer.json());
        return { ok: true };
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // An authenticated call: on a 401, refresh the tokens once and try again; if that
  // does not help, sign out and show the login form with the reason.
  async function api(method, path, options = {}) {
    return (await apiAnswer(method, path, options)).json();
  }

  // The same, answering the Response itself (a file to download).
  async function apiAnswer(method, path, options = {}) {
    const token = sessionStorage.getItem(KEYS.access);
    if (!token) { signOut("Please sign in."); throw new SignedOut(); }
    let answer = await send(method, path, { ...options, token });
    if (answer.status === 401) {
      const first = await errorOf(answer);
      const renewed = await refreshTokens();
      if (!renewed.ok) {
        signOut(renewed.message || first.message);
        throw new SignedOut();
      }
      answer = await send(method, path, { ...options, token: sessionStorage.getItem(KEYS.access) });
      if (answer.status === 401) {
        signOut((await errorOf(answer)).message);
        throw new SignedOut();
      }
    }
    if (!answer.ok) throw await errorOf(answer);
    return answer;
  }

  function storeTokens(pair) {
    sessionStorage.setItem(KEYS.access, pair.access_token);
    sessionStorage.setItem(KEYS.refresh, pair.refresh_token);
  }

  // --- signing in and out -----------------------------------------------------------

  function signOut(message) {
    state.signedIn = false;
    clearTimeout(state.timer);
    sessionStorage.removeItem(KEYS.access);
    sessionStorage.removeItem(KEYS.refresh);
    const dialog = $("action-dialog");
    if (dialog.open) dialog.close();
    show($("dashboard-view"), false);
    show($("logout"), false);
    $("whoami").textContent = "";
    $("updated-at").textContent = "";
    show($("login-view"), true);
    setMessage($("login-error"), message);
    $("password").value = "";
    ($("username").value ? $("password") : $("username")).focus();
  }

  function signedIn() {
    state.signedIn = true;
    show($("login-view"), false);
    setMessage($("login-error"), "");
    show($("dashboard-view"), true);
    show($("logout"), true);
    const user = sessionStorage.getItem(KEYS.user);
    $("whoami").textContent = user ? `signed in as ${user}` : "";
    load();
  }

  async function login(event) {
    event.preventDefault();
    const button = $("login-submit");
    button.disabled = true;
    setMessage($("login-error"), "");
    const username = $("username").value.trim();
    try {
      const answer = await send("POST", "/auth/token",
                                { body: { username, password: $("password").value } });
      if (!answer.ok) {
        setMessage($("login-error"), (await errorOf(answer)).message);
        return;
      }
      storeTokens(await answer.json());
      sessionStorage.setItem(KEYS.user, username);
      $("password").value = "";
      signedIn();
    } catch (error) {
      setMessage($("login-error"), `could not reach the gateway: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // --- loading ----------------------------------------------------------------------

  function query() {
    const hours = WINDOWS[$("window").value] || 24;
    const from = new Date(Date.now() - hours * 3600 * 1000);
    return { from: from.toISOString(), currency: $("currency").value || undefined };
  }

  function schedule() {
    clearTimeout(state.timer);
    if (state.signedIn) state.timer = setTimeout(load, refreshSeconds * 1000);
  }

  async function load() {
    if (!state.signedIn) return;
    if (state.loading) { state.reloadWanted = true; return; }
    state.loading = true;
    state.reloadWanted = false;
    clearTimeout(state.timer);
    try {
      const params = query();
      const recent = api("GET", "/c2b/payments", { params: { from: params.from,
                                                             limit: RECENT_PAYMENTS } })
        .catch((error) => error);
      const reconciliation = api("GET", "/reconciliation").catch((error) => error);
      const sms = api("GET", "/sms/summary", { params: { days: SMS_DAYS } })
        .catch((error) => error);
      const data = await api("GET", "/dashboard", { params });
      render(data, await recent);
      renderReconciliation(await reconciliation);
      renderSms(await sms);
      $("updated-at").textContent = `updated at ${clock(new Date())}`;
      setMessage($("load-error"), "");
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        if (error instanceof ApiError && error.status === 403) {
          signOut(error.message);
        } else {
          setMessage($("load-error"), `Could not load the dashboard: ${error.message}`);
        }
      }
    } finally {
      state.loading = false;
      if (state.reloadWanted) load();
      else schedule();
    }
  }

  // --- rendering ----------------------------------------------------------------------

  function render(data, recent) {
    noteCurrencies(data);
    renderWindow(data.window);
    renderTotals(data.totals || []);
    renderChart(data.series || [], data.window || {});
    renderAttention(data.attention || {});
    renderChannels(data.by_channel || [], data.channels || []);
    renderPsps(data.by_psp || []);
    renderStatuses(data.by_status || []);
    renderProviders(data.providers || []);
    renderRecent(recent);
  }

  function noteCurrencies(data) {
    const seen = new Set(state.currencies);
    const lists = [data.totals, data.by_channel, data.by_psp, data.series];
    for (const list of lists) for (const row of list || []) if (row.currency) seen.add(row.currency);
    for (const item of Object.values(data.attention || {})) {
      for (const row of item.oldest || []) if (row.currency) seen.add(row.currency);
    }
    if (seen.size === state.currencies.size) return;
    state.currencies = seen;
    const select = $("currency");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "All"),
      ...[...seen].sort().map((code) => el("option", { value: code }, code)));
    select.value = seen.has(chosen) ? chosen : "";
  }

  function renderWindow(window) {
    if (!window) return;
    $("window-label").textContent =
      `${localTime(window.from)} – ${localTime(window.to)} (${TIME_ZONE})`;
  }

  function renderTotals(totals) {
    const cards = totals.map((row) => el("div", {
      class: "card", data: { card: "total", currency: row.currency } },
      el("div", { class: "card-label" }, row.currency),
      el("div", { class: "card-amount", data: { role: "amount" } }, row.amount),
      el("div", { class: "card-count", data: { role: "count" } },
         `${row.count} ${row.count === 1 ? "payment" : "payments"}`)));
    if (!cards.length) {
      cards.push(el("div", { class: "card empty-card", data: { card: "none" } },
                    el("div", { class: "card-label" }, "No money applied in this window")));
    }
    $("totals").replaceChildren(...cards);
  }

  // One bar chart per currency (never a shared axis across currencies), with a bar
  // for every bucket of the window, empty ones included.
  function renderChart(series, window) {
    const bucketHours = window.bucket === "day" ? 24 : 1;
    $("chart-bucket").textContent = window.bucket ? `(per ${window.bucket})` : "";
    const currencies = [...new Set(series.map((row) => row.currency))].sort();
    if (!currencies.length) {
      $("chart").replaceChildren(el("p", { class: "empty" }, "No payments in this window."));
      return;
    }
    const step = bucketHours * 3600 * 1000;
    const start = floorTo(new Date(window.from || series[0].start), bucketHours);
    const end = new Date(window.to || series[series.length - 1].start).getTime();
    const buckets = [];
    for (let t = start; t < end && buckets.length < 1000; t += step) buckets.push(t);
    for (const row of series) {          // a bucket the window arithmetic did not produce
      const t = new Date(row.start).getTime();
      if (!buckets.includes(t)) buckets.push(t);
    }
    buckets.sort((a, b) => a - b);
    $("chart").replaceChildren(...currencies.map((code) =>
      barChart(code, buckets, series.filter((row) => row.currency === code), bucketHours)));
  }

  function floorTo(date, hours) {
    const d = new Date(date.getTime());
    d.setUTCMinutes(0, 0, 0);
    if (hours === 24) d.setUTCHours(0);
    return d.getTime();
  }

  function bucketLabel(t, hours) {
    const d = new Date(t);
    if (hours === 24) {
      return d.toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
    }
    return `${pad(d.getHours())}:00`;
  }

  function barChart(currency, buckets, rows, hours) {
    const W = 760, H = 210, left = 78, right = 12, top = 22, bottom = 34;
    const plotW = W - left - right, plotH = H - top - bottom;
    const byStart = new Map(rows.map((row) => [new Date(row.start).getTime(), row]));
    // Numbers only for bar heights; the labels show the API's strings.
    let peak = null;
    for (const row of rows) if (!peak || Number(row.amount) > Number(peak.amount)) peak = row;
    const max = peak ? Number(peak.amount) : 0;
    const slot = plotW / buckets.length;
    const barW = Math.max(1, Math.min(28, slot * 0.72));

    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
                               "aria-label": `Amount in ${currency} per ${hours === 24 ? "day" : "hour"}`,
                               data: { chart: currency } });
    chart.append(
      svg("text", { x: 4, y: 14, class: "axis-title" }, `${currency} per ${hours === 24 ? "day" : "hour"}`),
      svg("line", { x1: left, y1: top, x2: W - right, y2: top, class: "grid" }),
      svg("line", { x1: left, y1: top + plotH / 2, x2: W - right, y2: top + plotH / 2, class: "grid" }),
      svg("line", { x1: left, y1: top + plotH, x2: W - right, y2: top + plotH, class: "axis" }),
      svg("line", { x1: left, y1: top, x2: left, y2: top + plotH, class: "axis" }),
      svg("text", { x: left - 6, y: top + 4, class: "tick", "text-anchor": "end" },
          peak ? peak.amount : "0"),
      svg("text", { x: left - 6, y: top + plotH + 4, class: "tick", "text-anchor": "end" }, "0"),
    );
    const every = Math.max(1, Math.ceil(buckets.length / 8));
    buckets.forEach((t, index) => {
      const x = left + slot * index + (slot - barW) / 2;
      const row = byStart.get(t);
      if (row) {
        const h = max > 0 ? Math.max(1.5, (Number(row.amount) / max) * plotH) : 0;
        chart.append(svg("rect", {
          x: x.toFixed(1), y: (top + plotH - h).toFixed(1), width: barW.toFixed(1),
          height: h.toFixed(1), rx: 2, class: "bar",
          data: { start: row.start, amount: row.amount, count: row.count } },
          svg("title", {}, `${localTime(row.start)}: ${row.amount} ${currency} ` +
                           `(${row.count} ${row.count === 1 ? "payment" : "payments"})`)));
      }
      if (index % every === 0) {
        chart.append(svg("text", { x: (left + slot * index + slot / 2).toFixed(1),
                                   y: top + plotH + 16, class: "tick", "text-anchor": "middle" },
                         bucketLabel(t, hours)));
      }
    });
    return el("figure", { class: "panel chart-panel" }, chart);
  }

  function renderChannels(rows, channels) {
    // The registered channels, in the gateway's order, each with its name for people.
    const order = channels.map((c) => c.name);
    const names = Object.fromEntries(channels.map((c) => [c.name, c.label]));
    const present = new Set(rows.map((row) => row.channel));
    const all = [...rows, ...order.filter((c) => !present.has(c)).map((channel) => ({
      channel, currency: null, amount: null, count: 0, succeeded: 0, failed: 0,
      success_rate: null }))];
    all.sort((a, b) => order.indexOf(a.channel) - order.indexOf(b.channel)
                       || String(a.currency).localeCompare(String(b.currency)));
    $("by-channel").replaceChildren(table([
      { label: "Channel", cell: (r) => el("span", { title: r.channel },
                                          names[r.channel] || r.channel) },
      { label: "Applied", cls: "num", cell: (r) => r.currency ? money(r.amount, r.currency) : "—" },
      { label: "Transactions", cls: "num", cell: (r) => String(r.count) },
      { label: "Succeeded", cls: "num", cell: (r) => String(r.succeeded) },
      { label: "Failed", cls: "num", cell: (r) => String(r.failed) },
      { label: "Success rate", cls: "num", cell: (r) => ratio(r.success_rate) },
    ], all, { rowAttrs: (r) => ({ data: { channel: r.channel, currency: r.currency } }) }));
  }

  function renderPsps(rows) {
    $("by-psp").replaceChildren(table([
      { label: "Provider", cell: (r) => r.psp_name },
      { label: "Applied", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Payments", cls: "num", cell: (r) => String(r.count) },
    ], rows, { empty: "No provider payments in this window.",
               rowAttrs: (r) => ({ data: { psp: r.psp_uuid, currency: r.currency } }) }));
  }

  function renderStatuses(rows) {
    $("by-status").replaceChildren(table([
      { label: "Status", cell: (r) => el("span", { class: `status status-${r.status}` }, r.status) },
      { label: "Transactions", cls: "num", cell: (r) => String(r.count) },
    ], rows, { empty: "No transactions in this window.",
               rowAttrs: (r) => ({ data: { status: r.status } }) }));
  }

  function renderProviders(rows) {
    $("providers").replaceChildren(table([
      { label: "Provider", cell: (r) => r.provider },
      { label: "Endpoint", cell: (r) => el("code", {}, r.endpoint) },
      { label: "Calls", cls: "num", cell: (r) => String(r.count) },
      { label: "Errors", cls: "num", cell: (r) => errorRatio(r.error_rate) },
      { label: "p50", cls: "num", cell: (r) => ms(r.p50_ms) },
      { label: "p95", cls: "num", cell: (r) => ms(r.p95_ms) },
      { label: "Last error", cls: "wrap", cell: (r) => r.last_error
          ? el("span", {}, el("span", { class: "age" }, localTime(r.last_error.at)), " ",
               r.last_error.message)
          : el("span", { class: "muted" }, "—") },
    ], rows, { empty: "No calls to providers in this window.",
               rowAttrs: (r) => ({ class: r.error_rate >= 0.1 ? "warn" : null,
                                   data: { provider: r.provider, endpoint: r.endpoint } }) }));
  }

  function renderRecent(recent) {
    const target = $("recent-payments");
    if (recent instanceof Error) {
      if (recent instanceof SignedOut) return;
      target.replaceChildren(el("p", { class: "error" },
                                `Could not load the payments: ${recent.message}`));
      return;
    }
    const currency = $("currency").value;
    const items = (recent.items || []).filter((p) => !currency || p.currency === currency);
    target.replaceChildren(table([
      { label: "Time", cell: (p) => when(p.trans_time) },
      { label: "TransID", cell: (p) => el("code", {}, p.trans_id) },
      { label: "Account", cell: (p) => p.bill_ref },
      { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
      { label: "Payer", cell: (p) => p.msisdn || "—" },
      { label: "Status", cell: (p) => el("span", { class: `status status-${p.status}` }, p.status,
          p.unmatched_reason ? ` (${p.unmatched_reason})` : "") },
    ], items, { empty: "No paybill payments in this window.",
                rowAttrs: (p) => ({ data: { transId: p.trans_id, status: p.status } }) }));
  }

  // --- reconciliation ---------------------------------------------------------------

  const FIGURES = [
    ["received", "Received"], ["matched", "Matched"], ["recovered", "Recovered"],
    ["differing", "Differing"], ["missing_here", "Missing here"],
    ["missing_at_provider", "Missing at provider"],
  ];
  const OUTCOMES = { differing: "differing", missing_here: "missing here",
                     missing_at_provider: "missing at the provider" };

  function figure(value, currency, name) {
    const count = value ? value.count : 0;
    return el("span", { class: count ? "figure" : "figure zero",
                        data: { figure: name, count, total: value ? value.total : null } },
              el("span", { class: "figure-count" }, String(count)),
              count ? el("span", { class: "figure-total" }, money(value.total, currency)) : null);
  }

  function channelLabel(channels, name) {
    const found = (channels || []).find((c) => c.name === name);
    return el("span", { title: name }, found ? found.label : name);
  }

  function providerCell(r) {
    if (!r.provider) return el("span", { class: "muted" }, "—");
    return r.provider_name ? el("span", { title: r.provider }, r.provider_name)
                           : el("code", { title: r.provider }, r.provider);
  }

  function renderReconciliation(data) {
    if (data instanceof Error) {
      if (data instanceof SignedOut) return;
      setMessage($("reconciliation-error"), `Could not load the reconciliation: ${data.message}`);
      return;
    }
    setMessage($("reconciliation-error"), "");
    $("reconciliation-period").textContent = `${data.from} – ${data.to} (Nairobi days)`;
    $("reconciliation-csv").setAttribute(
      "href", `${API}/reconciliation.csv?from=${encodeURIComponent(data.from)}` +
              `&to=${encodeURIComponent(data.to)}`);
    const currency = $("currency").value;
    const rows = (data.rows || []).filter((r) => !currency || r.currency === currency);
    $("reconciliation-rows").replaceChildren(table([
      { label: "Day", cell: (r) => r.day },
      { label: "Channel", cell: (r) => channelLabel(data.channels, r.channel) },
      { label: "Provider", cell: providerCell },
      ...FIGURES.map(([name, label]) => ({
        label, cls: "num", cell: (r) => figure(r[name], r.currency, name) })),
    ], rows, { empty: "Nothing received or checked in this period.",
               rowAttrs: (r) => ({ data: { day: r.day, channel: r.channel,
                                           provider: r.provider, currency: r.currency } }) }));
    renderOpenItems(data.open_items || { count: 0, items: [] }, data.channels);
    renderRuns(data.runs || {});
    renderBalance(data.balance);
  }

  function renderOpenItems(open, channels) {
    const block = $("reconciliation-open");
    block.dataset.count = String(open.count);
    block.classList.toggle("calm", open.count === 0);
    block.querySelector('[data-role="count"]').textContent = String(open.count);
    const items = open.items || [];
    const body = [table([
      { label: "Day", cell: (r) => r.day },
      { label: "Channel", cell: (r) => channelLabel(channels, r.channel) },
      { label: "Receipt", cell: (r) => el("code", {}, r.key) },
      { label: "Outcome", cell: (r) => el("span", { class: `status status-${r.outcome}` },
                                         OUTCOMES[r.outcome] || r.outcome) },
      { label: "Provider's amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Here", cls: "num", cell: (r) => r.amount_here === null
          ? el("span", { class: "muted" }, "—") : money(r.amount_here, r.currency) },
      { label: "Detail", cls: "wrap", cell: (r) => r.detail || "—" },
      { label: "Found by", cell: (r) => (r.sources || []).join(", ") || "—" },
    ], items, { empty: "No open items.",
                rowAttrs: (r) => ({ data: { key: r.key, outcome: r.outcome } }) })];
    if (open.count > items.length) {
      body.push(el("p", { class: "hint" }, `The newest ${items.length} of ${open.count} are shown.`));
    }
    block.querySelector('[data-role="body"]').replaceChildren(...body);
  }

  function counts(summary) {
    const parts = Object.entries(summary || {}).map(([name, count]) => `${name} ${count}`);
    return parts.length ? parts.join(", ") : "—";
  }

  function renderRuns(runs) {
    const pull = runs.pull;
    const statement = runs.statement;
    const janitor = runs.janitor;
    const rows = [];
    if (pull) {
      rows.push({
        key: "pull", name: `M-Pesa pull (${pull.shortcode})`,
        last: pull.last_success_at, attempt: pull.last_attempt_at,
        result: !pull.enabled && !pull.last_attempt_at ? "not enabled"
          : pull.overdue_since ? `OVERDUE since ${localTime(pull.overdue_since)}` +
                                 (pull.last_error ? `: ${pull.last_error}` : "")
          : pull.last_error ? `last attempt failed: ${pull.last_error}`
          : counts(pull.last_summary),
        bad: Boolean(pull.overdue_since || pull.last_error),
      });
    }
    rows.push(statement ? {
      key: "statement", name: `Statement (${statement.kind || "?"} ${statement.provider || ""})`,
      last: statement.imported_at, attempt: null,
      result: `${statement.rows ?? "?"} rows, ${statement.period_from || "?"} – ` +
              `${statement.period_to || "?"}: ${counts(statement.summary)}`,
      bad: false,
    } : { key: "statement", name: "Statement", last: null, attempt: null,
          result: "none imported yet", bad: false });
    rows.push(janitor ? {
      key: "janitor", name: "Janitor", last: janitor.last_success_at,
      attempt: janitor.started_at,
      result: janitor.outcome === "ok" ? counts(janitor.summary)
                                       : `failed: ${janitor.error || "?"}`,
      bad: janitor.outcome !== "ok",
    } : { key: "janitor", name: "Janitor", last: null, attempt: null, result: "not run yet",
          bad: false });
    $("reconciliation-runs").replaceChildren(table([
      { label: "Check", cell: (r) => r.name },
      { label: "Last success", cell: (r) => r.last ? when(r.last) : "—" },
      { label: "Last run", cell: (r) => r.attempt ? when(r.attempt) : "—" },
      { label: "Result", cls: "wrap", cell: (r) => r.result },
    ], rows, { rowAttrs: (r) => ({ class: r.bad ? "warn" : null, data: { run: r.key } }) }));
  }

  function renderBalance(balance) {
    const target = $("reconciliation-balance");
    if (!balance) {
      target.replaceChildren(el("p", { class: "empty", data: { balance: "none" } },
                                "No Account Balance answered yet."));
      return;
    }
    target.replaceChildren(el("div", { class: "balance", data: { balance: "latest" } },
      el("div", { class: "card" },
         el("div", { class: "card-label" }, balance.account || "Account"),
         el("div", { class: "card-amount", data: { role: "available" } },
            balance.available ?? "—", " ", el("span", { class: "currency" }, balance.currency || "")),
         el("div", { class: "card-count" }, "as of ", when(balance.answered_at))),
      el("div", { class: "card" },
         el("div", { class: "card-label" }, "Paybill received in the period"),
         el("div", { class: "card-amount", data: { role: "received" } },
            balance.received ? balance.received.total : "—", " ",
            el("span", { class: "currency" }, balance.currency || "")),
         el("div", { class: "card-count" }, balance.received
            ? `${balance.received.count} ${balance.received.count === 1 ? "payment" : "payments"}`
            : ""))));
  }

  async function requestBalance() {
    const button = $("balance-check");
    button.disabled = true;
    setMessage($("balance-message"), "");
    try {
      await api("POST", "/reconciliation/balance");
      flash("Account Balance asked for: M-Pesa's answer shows here once it arrives.");
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        setMessage($("balance-message"), `Could not ask for the balance: ${error.message}`);
      }
    } finally {
      button.disabled = false;
    }
  }

  // The CSV needs the bearer token, so the link fetches it and saves what it answered.
  async function downloadCsv(event) {
    event.preventDefault();
    const link = $("reconciliation-csv");
    const url = new URL(link.getAttribute("href"), location.origin);
    try {
      const answer = await apiAnswer("GET", url.pathname.slice(API.length),
                                     { params: Object.fromEntries(url.searchParams) });
      const disposition = answer.headers.get("Content-Disposition") || "";
      const named = /filename="([^"]+)"/.exec(disposition);
      const file = URL.createObjectURL(await answer.blob());
      const save = el("a", { href: file, download: named ? named[1] : "reconciliation.csv",
                             hidden: true });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(file), 60000);
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        setMessage($("reconciliation-error"), `Could not download the CSV: ${error.message}`);
      }
    }
  }

  // --- SMS receipts -----------------------------------------------------------------

  const SMS_SHOWN = ["sent", "delivered", "failed"];   // the rest is counted as other

  // A number as the page shows one: all but its first four and last three digits hidden
  // (the rule of the gateway's logs). The summary answers the number it went to in full.
  function maskedNumber(number) {
    if (!number) return el("span", { class: "muted" }, "no number");
    const text = String(number);
    return el("code", {}, text.length > 7
      ? `${text.slice(0, 4)}${"*".repeat(text.length - 7)}${text.slice(-3)}` : "***");
  }

  function renderSms(data) {
    if (data instanceof Error) {
      if (data instanceof SignedOut) return;
      setMessage($("sms-error"), `Could not load the SMS receipts: ${data.message}`);
      return;
    }
    setMessage($("sms-error"), "");
    const days = [...(data.days || [])].reverse();   // newest first
    $("sms-period").textContent = days.length
      ? `${days[days.length - 1].day} – ${days[0].day} (UTC days)` : "";
    $("sms-zone").textContent = `Times in ${TIME_ZONE}.`;
    const other = (d) => Object.entries(d)
      .filter(([name, count]) => typeof count === "number" && name !== "total"
                                 && !SMS_SHOWN.includes(name) && count > 0);
    const count = (name) => ({
      label: name, cls: "num",
      cell: (d) => el("span", { class: d[name] ? "figure-count" : "muted",
                                data: { status: name } }, String(d[name] ?? 0)) });
    $("sms-days").replaceChildren(table([
      { label: "Day", cell: (d) => d.day },
      count("sent"), count("delivered"), count("failed"),
      { label: "other", cls: "num", cell: (d) => {
          const rest = other(d);
          const sum = rest.reduce((total, [, n]) => total + n, 0);
          return el("span", { class: sum ? "figure-count" : "muted", data: { status: "other" },
                              title: rest.map(([name, n]) => `${name} ${n}`).join(", ") || null },
                    String(sum));
        } },
      { label: "Total", cls: "num", cell: (d) => el("strong", { data: { status: "total" } },
                                                    String(d.total ?? 0)) },
    ], days, { empty: "No SMS receipts in this period.",
               rowAttrs: (d) => ({ data: { day: d.day } }) }));

    const block = $("sms-failing");
    const failing = data.failing || [];
    const total = data.failing_total ?? failing.length;
    block.dataset.count = String(total);
    block.classList.toggle("calm", total === 0);
    block.querySelector('[data-role="count"]').textContent = String(total);
    const body = [table([
      { label: "Recorded", cell: (m) => when(m.created_at) },
      { label: "Event", cell: (m) => [el("code", {}, m.event),
          m.chf_id ? el("span", { class: "sub" }, `insuree ${m.chf_id}`) : null] },
      { label: "Recipient", cell: (m) => maskedNumber(m.recipient) },
      { label: "Status", cell: (m) => el("span", { class: `status status-${m.status}` }, m.status) },
      { label: "Provider's reason", cls: "wrap", cell: (m) => m.failure
          ? el("span", { data: { role: "reason" } }, el("code", {}, m.failure.code), " ",
               m.failure.reason)
          : el("span", { class: "muted" }, "—") },
      { label: "Attempts", cls: "num", cell: (m) => String(m.attempts) },
    ], failing, { empty: "No failing SMS receipts.",
                  rowAttrs: (m) => ({ data: { id: m.id, status: m.status } }) })];
    if (total > failing.length) {
      body.push(el("p", { class: "hint" }, `The latest ${failing.length} of ${total} are shown.`));
    }
    block.querySelector('[data-role="body"]').replaceChildren(...body);
  }

  // --- needs attention and the operator actions --------------------------------------------

  // Inbox kinds the gateway can process again: confirmations, M-Pesa Express results,
  // Transaction Status / Account Balance results, records recovered from M-Pesa's own.
  const REPLAYABLE_KINDS = ["confirmation", "stk_result", "result", "queue_timeout", "transaction"];

  function renderAttention(attention) {
    attentionBlock("stuck_debits", attention.stuck_debits, "No stuck debits.", [
      { label: "Since", cell: (r) => when(r.updated_at) },
      { label: "Status", cell: (r) => el("span", { class: `status status-${r.status}` }, r.status) },
      { label: "Channel", cell: (r) => r.channel },
      { label: "Insuree", cell: (r) => r.chf_id },
      { label: "Amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Transaction", cell: (r) => shortId(r.uuid) },
      { label: "Why", cell: (r) => r.note || "—" },
      { label: "", cls: "actions", cell: debitActions },
    ], (r) => ({ data: { uuid: r.uuid, status: r.status } }));
    attentionBlock("c2b_unmatched", attention.c2b_unmatched, "No unmatched payments.", [
      { label: "Received", cell: (r) => when(r.received_at) },
      { label: "TransID", cell: (r) => el("code", {}, r.trans_id) },
      { label: "Account", cell: (r) => r.bill_ref },
      { label: "Amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Reason", cell: (r) => r.reason || "—" },
      { label: "", cls: "actions", cell: (r) => actionButton("Allocate", "allocate", r) },
    ], (r) => ({ data: { transId: r.trans_id, billRef: r.bill_ref } }));
    attentionBlock("failed_inbox", attention.failed_inbox, "No callbacks to replay.", [
      { label: "Received", cell: (r) => when(r.received_at) },
      { label: "Kind", cell: (r) => r.kind },
      { label: "Status", cell: (r) => el("span", { class: `status status-${r.status}` }, r.status) },
      { label: "Entry", cell: (r) => shortId(r.id) },
      { label: "", cls: "actions", cell: (r) =>
          REPLAYABLE_KINDS.includes(r.kind) && ["failed", "needs_review", "received"].includes(r.status)
            ? actionButton("Replay", "replay", r)
            : el("span", { class: "muted" }, "not replayable") },
    ], (r) => ({ data: { id: r.id, status: r.status } }));
    const overdue = attention.mpesa_pull_overdue;
    attentionBlock("mpesa_pull_overdue", overdue, "The M-Pesa pull is within its reach.", [
      { label: "Not succeeded since", cell: (r) => when(r.since) },
      { label: "Shortcode", cell: (r) => el("code", {}, r.shortcode) },
      { label: "Last attempt", cell: (r) => r.last_attempt_at ? when(r.last_attempt_at) : "—" },
      { label: "Last error", cls: "wrap", cell: (r) => r.last_error || "—" },
    ], (r) => ({ data: { shortcode: r.shortcode } }));
    const gaps = overdue ? overdue.oldest || [] : [];
    setMessage($("pull-overdue"), gaps.length
      ? `The M-Pesa pull of ${gaps.map((r) => r.shortcode).join(", ")} has not succeeded since ` +
        `${localTime(gaps[0].since)}, longer than it reaches back (48 hours): payments of ` +
        "that gap can only be recovered from the paybill's statement."
      : "");
    attentionBlock("c2b_needs_review", attention.c2b_needs_review, "No payments to review.", [
      { label: "Received", cell: (r) => when(r.received_at) },
      { label: "TransID", cell: (r) => el("code", {}, r.trans_id) },
      { label: "Amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Reason", cell: (r) => r.reason },
    ], (r) => ({ data: { transId: r.trans_id } }));
  }

  function attentionBlock(key, item, empty, columns, rowAttrs) {
    const block = $(`attention-${key}`);
    const count = item ? item.count : 0;
    const oldest = item ? item.oldest || [] : [];
    block.dataset.count = String(count);
    block.classList.toggle("calm", count === 0);
    const badge = block.querySelector('[data-role="count"]');
    badge.textContent = String(count);
    const body = [table(columns, oldest, { empty, rowAttrs })];
    if (count > oldest.length) {
      body.push(el("p", { class: "hint" }, `The oldest ${oldest.length} of ${count} are shown.`));
    }
    block.querySelector('[data-role="body"]').replaceChildren(...body);
  }

  function debitActions(r) {
    if (r.status === "unknown") {
      return [actionButton("Mark succeeded", "resolve-succeeded", r),
              actionButton("Mark failed", "resolve-failed", r)];
    }
    if (r.status === "otp_sent") return actionButton("Expire", "expire", r);
    return el("span", { class: "muted" }, "in progress");
  }

  function actionButton(label, kind, row) {
    return el("button", { type: "button", class: "small", data: { action: kind },
                          on: { click: () => openAction(kind, row) } }, label);
  }

  const ACTIONS = {
    "resolve-succeeded": {
      title: "Mark the debit succeeded",
      subject: (r) => `Transaction ${r.uuid}: ${r.amount} ${r.currency} for insuree ${r.chf_id}. ` +
                      "Confirm with the provider first: this settles the policy.",
      reference: true,
      submit: (r, f) => api("POST", `/transactions/${encodeURIComponent(r.uuid)}/resolve`, { body: {
        outcome: "succeeded", provider_reference: f.reference, reason: f.reason } }),
      done: (r, answer) => `Transaction ${r.uuid} is now ${answer.status}.`,
    },
    "resolve-failed": {
      title: "Mark the debit failed",
      subject: (r) => `Transaction ${r.uuid}: ${r.amount} ${r.currency} for insuree ${r.chf_id}. ` +
                      "Confirm with the provider first that no money moved.",
      submit: (r, f) => api("POST", `/transactions/${encodeURIComponent(r.uuid)}/resolve`, { body: {
        outcome: "failed", provider_reference: f.reference || "", reason: f.reason } }),
      done: (r, answer) => `Transaction ${r.uuid} is now ${answer.status}.`,
    },
    expire: {
      title: "Expire the debit",
      subject: (r) => `Transaction ${r.uuid}: ${r.amount} ${r.currency} for insuree ${r.chf_id}, ` +
                      "waiting for its OTP.",
      submit: (r, f) => api("POST", `/transactions/${encodeURIComponent(r.uuid)}/expire`,
                            { body: { reason: f.reason } }),
      done: (r, answer) => `Transaction ${r.uuid} is now ${answer.status}.`,
    },
    allocate: {
      title: "Allocate the payment to a policy",
      subject: (r) => `Payment ${r.trans_id}: ${r.amount} ${r.currency} to account ${r.bill_ref} ` +
                      `(${r.reason || "unmatched"}). The policy must be idle and of exactly this amount.`,
      policy: true,
      submit: (r, f) => api("POST", `/c2b/payments/${encodeURIComponent(r.trans_id)}/allocate`,
                            { body: { policy_uuid: f.policy, note: f.reason } }),
      done: (r, answer) => `Payment ${r.trans_id} is now ${answer.status}` +
                           (answer.receipt ? ` (receipt ${answer.receipt}).` : "."),
    },
    replay: {
      title: "Replay the callback",
      subject: (r) => `Inbox entry ${r.id} (${r.kind}, ${r.status}) is processed again.`,
      submit: (r, f) => api("POST", `/c2b/inbox/${encodeURIComponent(r.id)}/replay`,
                            { body: { reason: f.reason } }),
      done: (r, answer) => `Inbox entry ${r.id} replayed: now ${answer.status}.`,
    },
  };

  function openAction(kind, row) {
    const action = ACTIONS[kind];
    state.action = { kind, row };
    $("action-form").dataset.action = kind;
    $("action-title").textContent = action.title;
    $("action-subject").textContent = action.subject(row);
    show($("action-reference-field"), Boolean(action.reference));
    $("action-reference").required = Boolean(action.reference);
    show($("action-policy-field"), Boolean(action.policy));
    $("action-policy").required = Boolean(action.policy);
    for (const id of ["action-reference", "action-policy", "action-reason"]) $(id).value = "";
    setMessage($("action-error"), "");
    $("action-submit").disabled = false;
    $("action-dialog").showModal();
    (action.reference ? $("action-reference") : action.policy ? $("action-policy")
                                                               : $("action-reason")).focus();
  }

  async function submitAction(event) {
    event.preventDefault();
    if (!state.action) return;
    const { kind, row } = state.action;
    const action = ACTIONS[kind];
    const fields = { reference: $("action-reference").value.trim(),
                     policy: $("action-policy").value.trim(),
                     reason: $("action-reason").value.trim() };
    $("action-submit").disabled = true;
    setMessage($("action-error"), "");
    try {
      const answer = await action.submit(row, fields);
      $("action-dialog").close();
      state.action = null;
      flash(action.done(row, answer));
      load();
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        setMessage($("action-error"), error instanceof ApiError
          ? error.message : `could not reach the gateway: ${error.message}`);
      }
    } finally {
      $("action-submit").disabled = false;
    }
  }

  let flashTimer = null;
  function flash(text) {
    setMessage($("flash"), text);
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => setMessage($("flash"), ""), 15000);
  }

  // --- start --------------------------------------------------------------------

  function start() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => {
      // Revoke the session on the server too; the page signs out whatever it answers.
      const refresh = sessionStorage.getItem(KEYS.refresh);
      if (refresh) send("POST", "/auth/logout", { body: { refresh_token: refresh } }).catch(() => {});
      sessionStorage.removeItem(KEYS.user);
      signOut("");
    });
    $("window").addEventListener("change", load);
    $("currency").addEventListener("change", load);
    $("refresh-now").addEventListener("click", load);
    $("reconciliation-csv").addEventListener("click", downloadCsv);
    $("balance-check").addEventListener("click", requestBalance);
    $("action-form").addEventListener("submit", submitAction);
    $("action-cancel").addEventListener("click", () => {
      state.action = null;
      $("action-dialog").close();
    });
    $("action-dialog").addEventListener("close", () => { state.action = null; });
    if (sessionStorage.getItem(KEYS.access)) signedIn();
    else signOut("");
  }

  start();
})();
