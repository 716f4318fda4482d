// The operators' dashboard and desk: signs in, reads GET /api/v1/dashboard and the desk's
// lists every few seconds, draws them, finds what an operator is asked about, and runs
// the operator actions. Plain JavaScript, no library, no build step.
//
// Rules kept throughout:
// - every value from the API reaches the page through textContent or setAttribute
//   (never innerHTML), so nothing it contains can become markup;
// - amounts are decimal strings and are shown exactly as given; amounts of different
//   currencies are never added together. The chart converts them to numbers only to
//   size the bars and its scale;
// - every time is shown in the display zone (dashboard.display_timezone, on the page's
//   <body>) with the zone's name beside it; the API's times are UTC.
"use strict";

(() => {
  const API = "/api/v1";
  const KEYS = { access: "gateway.access_token", refresh: "gateway.refresh_token",
                 user: "gateway.username" };
  const WINDOWS = { "24h": 24, "7d": 7 * 24, "30d": 30 * 24 };   // hours
  const SMS_DAYS = 7;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DAY_MS = 24 * 3600 * 1000;

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
    channels: [],         // the registered channels, as the dashboard answers them
    custom: null,         // {from, to, fromDay, toDay}: the dates chosen, when "Dates…"
    action: null,         // the operator action the dialog is asking about
    allocating: null,     // the payment the allocation picker is for
    detail: [],           // the detail panel's stack: [{kind, id}], the shown one last
    chart: null,          // the last series drawn, to draw again at another width
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
  // Each cell carries its column's label, which narrow screens show beside the value
  // (the table is then a list of rows, never wider than its card).
  function table(columns, rows, { empty = "Nothing here.", rowAttrs = () => ({}) } = {}) {
    if (!rows.length) return el("p", { class: "empty" }, empty);
    return el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.cls, scope: "col" },
                                                           c.label)))),
      el("tbody", {}, rows.map((row) => el("tr", rowAttrs(row),
        columns.map((c) => el("td", { class: c.cls, "data-label": c.label },
                              el("span", { class: "cell" }, c.cell(row)))))))));
  }

  // A list of facts: [label, value] pairs (a value null or undefined is left out).
  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.filter(([, value]) => value !== null &&
                                                                    value !== undefined)
      .flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
  }

  // --- times, in the display zone ----------------------------------------------------

  const ZONE = (() => {
    const asked = document.body.dataset.displayTimezone || "UTC";
    try {
      new Intl.DateTimeFormat("en-GB", { timeZone: asked });
      return asked;
    } catch {
      return "UTC";   // a zone this browser does not know
    }
  })();
  const ZONED = new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" });

  function zoneParts(date) {
    const parts = {};
    for (const part of ZONED.formatToParts(date)) parts[part.type] = part.value;
    return parts;
  }

  const pad = (n) => String(n).padStart(2, "0");

  // "2026-12-06 09:15 EAT": the instant in the display zone, with the zone's short name.
  function zonedTime(iso, { seconds = false } = {}) {
    if (!iso) return "—";
    const d = iso instanceof Date ? iso : new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const p = zoneParts(d);
    const time = seconds ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`;
    return `${p.year}-${p.month}-${p.day} ${time} ${p.timeZoneName}`;
  }

  function clock(date) {
    const p = zoneParts(date);
    return `${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
  }

  // The display zone's calendar day of an instant, "YYYY-MM-DD".
  function zoneDay(date) {
    const p = zoneParts(date);
    return `${p.year}-${p.month}-${p.day}`;
  }

  // How far the display zone's wall clock is ahead of UTC at instant `t` (ms).
  function zoneOffset(t) {
    const p = zoneParts(new Date(t));
    const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour),
                          Number(p.minute), Number(p.second));
    return wall - Math.floor(t / 1000) * 1000;
  }

  // The instant a display-zone day ("YYYY-MM-DD") starts; `days` moves it on.
  function dayStart(day, days = 0) {
    const [y, m, d] = day.split("-").map(Number);
    const wall = Date.UTC(y, m - 1, d + days);
    const guess = wall - zoneOffset(wall);
    return new Date(wall - zoneOffset(guess));
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
    if (!iso) return el("span", { class: "muted" }, "—");
    return el("span", { class: "when", title: `${zonedTime(iso, { seconds: true })} (${iso})` },
              zonedTime(iso), el("span", { class: "age" }, age(iso)));
  }

  // --- other formatting -------------------------------------------------------------

  function money(amount, currency) {
    return el("span", { class: "money" }, el("span", { class: "amount" }, amount ?? "—"),
              " ", el("span", { class: "currency" }, currency ?? ""));
  }

  function percent(value) {
    const number = value * 100;
    return `${number.toFixed(number % 1 ? 1 : 0)}%`;
  }

  function ratio(value) {
    if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
    const cls = value >= 0.95 ? "good" : value >= 0.8 ? "fair" : "bad";
    return el("span", { class: `rate ${cls}` }, percent(value));
  }

  // Failures are the provider's fault: coloured. Refusals are business answers: plain.
  function failureRate(value, name) {
    if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
    const cls = value === 0 ? "good" : value < 0.1 ? "fair" : "bad";
    return el("span", { class: `rate ${cls}`, data: { figure: name } }, percent(value));
  }

  function refusalRate(value, count, name) {
    if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
    return el("span", { class: "rate plain", data: { figure: name },
                        title: `${count} refused` }, percent(value));
  }

  // A value of the API as one line of text (a string as it is, anything else as JSON).
  function text(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function ms(value) { return value === null || value === undefined ? "—" : `${value} ms`; }

  function status(value) {
    return el("span", { class: `status status-${value}` }, value);
  }

  // A truncated id that opens the detail of what it names; the detail shows it whole.
  function idLink(kind, id) {
    const text = String(id ?? "");
    if (!text) return el("span", { class: "muted" }, "—");
    return el("button", { type: "button", class: "link", title: text,
                          data: { open: kind, id: text },
                          on: { click: () => openDetail(kind, text) } },
              el("code", {}, text.length > 13 ? `${text.slice(0, 8)}…` : text));
  }

  // A whole id, selectable in one click, with a button that copies it.
  function fullId(id) {
    if (!id) return el("span", { class: "muted" }, "—");
    const copy = el("button", { type: "button", class: "secondary small copy",
                                title: "Copy to the clipboard" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(String(id));
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Select it";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
    return el("span", { class: "id-line" }, el("code", { class: "full-id" }, String(id)), copy);
  }

  function channelName(name) {
    const found = state.channels.find((c) => c.name === name);
    return el("span", { title: name }, found ? found.label : name);
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

  function messageOf(error) {
    return error instanceof ApiError ? error.message
                                     : `could not reach the gateway: ${error.message}`;
  }

  // A file the API answers (it needs the bearer token, so a plain link cannot fetch it):
  // fetched, then saved under the name the answer gives (or `fallback`).
  async function download(link, fallback, errorNode) {
    const url = new URL(link.getAttribute("href"), location.origin);
    setMessage(errorNode, "");
    try {
      const answer = await apiAnswer("GET", url.pathname.slice(API.length),
                                     { params: Object.fromEntries(url.searchParams) });
      const named = /filename="([^"]+)"/.exec(answer.headers.get("Content-Disposition") || "");
      const file = URL.createObjectURL(await answer.blob());
      const save = el("a", { href: file, download: named ? named[1] : fallback, hidden: true });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(file), 60000);
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        setMessage(errorNode, `Could not download ${fallback}: ${messageOf(error)}`);
      }
    }
  }

  // --- signing in and out -----------------------------------------------------------

  function signOut(message) {
    state.signedIn = false;
    clearTimeout(state.timer);
    sessionStorage.removeItem(KEYS.access);
    sessionStorage.removeItem(KEYS.refresh);
    for (const id of ["action-dialog", "allocate-dialog", "detail-dialog"]) {
      if ($(id).open) $(id).close();
    }
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

  // --- the window: a preset (up to now) or dates of the display zone -------------------

  function range() {
    if ($("window").value === "custom" && state.custom) {
      return { from: state.custom.from, to: state.custom.to, custom: true };
    }
    const to = new Date();
    const hours = WINDOWS[$("window").value] || 24;
    return { from: new Date(to.getTime() - hours * 3600 * 1000), to, custom: false };
  }

  // The window as list filters: a preset is open-ended, so what arrives shows.
  function rangeParams() {
    const { from, to, custom } = range();
    return { from: from.toISOString(), to: custom ? to.toISOString() : undefined };
  }

  function chooseWindow() {
    const custom = $("window").value === "custom";
    show($("range-form"), custom);
    if (!custom) {
      setMessage($("range-error"), "");
      load();
      return;
    }
    if (!$("range-to").value) $("range-to").value = zoneDay(new Date());
    if (!$("range-from").value) {
      $("range-from").value = zoneDay(new Date(Date.now() - 6 * DAY_MS));
    }
    if (state.custom) load();
    else $("range-from").focus();
  }

  function applyRange(event) {
    event.preventDefault();
    const fromDay = $("range-from").value;
    const toDay = $("range-to").value;
    if (!fromDay || !toDay) {
      setMessage($("range-error"), "Choose both days.");
      return;
    }
    if (fromDay > toDay) {
      setMessage($("range-error"), "The first day must not be after the last.");
      return;
    }
    setMessage($("range-error"), "");
    state.custom = { from: dayStart(fromDay), to: dayStart(toDay, 1), fromDay, toDay };
    resetPages();
    load();
  }

  // --- loading ----------------------------------------------------------------------

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
      const { from, to, custom } = range();
      const params = { from: from.toISOString(), to: custom ? to.toISOString() : undefined,
                       currency: $("currency").value || undefined };
      const reconciliation = api("GET", "/reconciliation").catch((error) => error);
      const sms = api("GET", "/sms/summary", { params: { days: SMS_DAYS } })
        .catch((error) => error);
      // The lists name channels as the dashboard does: on the first load, after it.
      const loadLists = () => Promise.all(Object.values(LISTS).map((list) => loadList(list)));
      let lists = state.channels.length ? loadLists() : null;
      const data = await api("GET", "/dashboard", { params });
      render(data);
      lists = lists || loadLists();
      renderReconciliation(await reconciliation);
      renderSms(await sms);
      renderReports();
      await lists;
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

  function render(data) {
    noteChannels(data.channels || []);
    noteCurrencies(data);
    renderWindow(data.window);
    renderTotals(data.totals || []);
    state.chart = { series: data.series || [], window: data.window || {} };
    renderChart();
    renderAttention(data.attention || {});
    show($("attention-premiums_waiting"), data.insurance_backend === "openimis");
    renderChannels(data.by_channel || []);
    renderPsps(data.by_psp || []);
    renderStatuses(data.by_status || []);
    renderProviders(data.providers || []);
  }

  function noteChannels(channels) {
    if (JSON.stringify(channels) === JSON.stringify(state.channels)) return;
    state.channels = channels;
    const select = $("transactions-channel");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "any"),
      ...channels.map((c) => el("option", { value: c.name }, c.label)));
    select.value = channels.some((c) => c.name === chosen) ? chosen : "";
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
    $("window-label").textContent = `${zonedTime(window.from)} – ${zonedTime(window.to)}`;
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

  // One bar chart per currency (never a shared axis across currencies), with a bar for
  // every bucket of the window, empty ones included; drawn at the width it is shown at,
  // so its labels keep their size on any screen.
  function renderChart() {
    const { series, window } = state.chart || { series: [], window: {} };
    const bucketHours = window.bucket === "day" ? 24 : 1;
    $("chart-bucket").textContent = window.bucket === "day" ? "(per UTC day)"
      : window.bucket ? `(per hour, ${ZONE})` : "";
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
    const figures = currencies.map((code) => el("figure", { class: "panel chart-panel",
                                                            data: { currency: code } }));
    $("chart").replaceChildren(...figures);
    figures.forEach((figure, index) => {
      const code = currencies[index];
      figure.append(barChart(code, buckets, series.filter((row) => row.currency === code),
                             bucketHours, figure.clientWidth - 24));
    });
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
      return d.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
    }
    const p = zoneParts(d);
    return p.hour === "00" ? `${Number(p.day)}/${Number(p.month)}` : `${p.hour}:00`;
  }

  // A round step for about `parts` intervals up to `max`: 1, 2, 2.5 or 5 times a power of 10.
  function niceStep(max, parts) {
    const raw = max / parts;
    const power = 10 ** Math.floor(Math.log10(raw));
    const fraction = raw / power;
    return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5
                                                                                        : 10) * power;
  }

  function scaleLabel(value) {
    return value.toLocaleString("en-GB", { maximumFractionDigits: 2 });
  }

  function barChart(currency, buckets, rows, hours, width) {
    const W = Math.max(260, Math.round(width)), H = 230;
    const byStart = new Map(rows.map((row) => [new Date(row.start).getTime(), row]));
    // Numbers only for bar heights and the scale; the bars' titles show the API's strings.
    const max = Math.max(0, ...rows.map((row) => Number(row.amount)));
    const stepValue = max > 0 ? niceStep(max, 4) : 1;
    const top = stepValue * Math.max(1, Math.ceil(max / stepValue));
    const ticks = [];
    for (let value = 0; value <= top + stepValue / 2; value += stepValue) ticks.push(value);
    const widest = Math.max(...ticks.map((value) => scaleLabel(value).length));
    const left = 14 + widest * 7.5, right = 12, upper = 26, lower = 36;
    const plotW = W - left - right, plotH = H - upper - lower;
    const slot = plotW / buckets.length;
    const barW = Math.max(1, Math.min(28, slot * 0.72));
    const y = (value) => upper + plotH - (value / top) * plotH;

    const per = hours === 24 ? "UTC day" : "hour";
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
                               class: "chart", "aria-label": `Amount in ${currency} per ${per}`,
                               data: { chart: currency } });
    chart.append(svg("text", { x: 4, y: 15, class: "axis-title" }, `${currency} per ${per}`));
    for (const value of ticks) {
      chart.append(
        svg("line", { x1: left, y1: y(value), x2: W - right, y2: y(value),
                      class: value === 0 ? "axis" : "grid" }),
        svg("text", { x: left - 6, y: y(value) + 4, class: "tick", "text-anchor": "end",
                      data: { tick: "y" } }, scaleLabel(value)));
    }
    chart.append(svg("line", { x1: left, y1: upper, x2: left, y2: upper + plotH, class: "axis" }));
    // Labels at least 64 px apart, on round hours or days where the slots allow.
    const every = Math.max(1, Math.ceil(64 / slot));
    buckets.forEach((t, index) => {
      const x = left + slot * index + (slot - barW) / 2;
      const row = byStart.get(t);
      if (row) {
        const h = max > 0 ? Math.max(1.5, (Number(row.amount) / top) * plotH) : 0;
        chart.append(svg("rect", {
          x: x.toFixed(1), y: (upper + plotH - h).toFixed(1), width: barW.toFixed(1),
          height: h.toFixed(1), rx: 2, class: "bar",
          data: { start: row.start, amount: row.amount, count: row.count } },
          svg("title", {}, `${zonedTime(row.start)}: ${row.amount} ${currency} ` +
                           `(${row.count} ${row.count === 1 ? "payment" : "payments"})`)));
      }
      if (index % every === 0) {
        chart.append(svg("text", { x: (left + slot * index + slot / 2).toFixed(1),
                                   y: upper + plotH + 18, class: "tick", "text-anchor": "middle",
                                   data: { tick: "x" } },
                         bucketLabel(t, hours)));
      }
    });
    return chart;
  }

  function renderChannels(rows) {
    // The registered channels, in the gateway's order, each with its name for people.
    const order = state.channels.map((c) => c.name);
    const present = new Set(rows.map((row) => row.channel));
    const all = [...rows, ...order.filter((c) => !present.has(c)).map((channel) => ({
      channel, currency: null, amount: null, count: 0, succeeded: 0, failed: 0, other: 0,
      success_rate: null }))];
    all.sort((a, b) => order.indexOf(a.channel) - order.indexOf(b.channel)
                       || String(a.currency).localeCompare(String(b.currency)));
    const other = (r) => r.other ?? r.count - r.succeeded - r.failed;
    $("by-channel").replaceChildren(table([
      { label: "Channel", cell: (r) => channelName(r.channel) },
      { label: "Applied", cls: "num", cell: (r) => r.currency ? money(r.amount, r.currency) : "—" },
      { label: "Transactions", cls: "num", cell: (r) => el("span", { data: { figure: "count" } },
                                                            String(r.count)) },
      { label: "Succeeded", cls: "num", cell: (r) => el("span", { data: { figure: "succeeded" } },
                                                         String(r.succeeded)) },
      { label: "Failed", cls: "num", cell: (r) => el("span", { data: { figure: "failed" } },
                                                      String(r.failed)) },
      { label: "Not finished", cls: "num", cell: (r) => el("span", {
          class: other(r) ? "figure-count" : "muted", data: { figure: "other" },
          title: "waiting for the payer, processing or unknown" }, String(other(r))) },
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
      { label: "Status", cell: (r) => status(r.status) },
      { label: "Transactions", cls: "num", cell: (r) => String(r.count) },
    ], rows, { empty: "No transactions in this window.",
               rowAttrs: (r) => ({ data: { status: r.status } }) }));
  }

  function renderProviders(rows) {
    const failure = (r) => r.failure_rate ?? r.error_rate;
    const lastFailure = (r) => (r.last_failure === undefined ? r.last_error : r.last_failure);
    $("providers").replaceChildren(table([
      { label: "Provider", cell: (r) => r.provider },
      { label: "Endpoint", cell: (r) => el("code", {}, r.endpoint) },
      { label: "Calls", cls: "num", cell: (r) => String(r.count) },
      { label: "Refused", cls: "num", cell: (r) =>
          refusalRate(r.refusal_rate ?? 0, r.refusals ?? 0, "refusal_rate") },
      { label: "Failed", cls: "num", cell: (r) => failureRate(failure(r), "failure_rate") },
      { label: "p50", cls: "num", cell: (r) => ms(r.p50_ms) },
      { label: "p95", cls: "num", cell: (r) => ms(r.p95_ms) },
      { label: "Last failure", cls: "wrap", cell: (r) => lastFailure(r)
          ? el("span", {}, el("span", { class: "age" }, zonedTime(lastFailure(r).at)), " ",
               lastFailure(r).message)
          : el("span", { class: "muted" }, "—") },
    ], rows, { empty: "No calls to providers in this window.",
               rowAttrs: (r) => ({ class: failure(r) >= 0.1 ? "warn" : null,
                                   data: { provider: r.provider, endpoint: r.endpoint } }) }));
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
          : pull.overdue_since ? `OVERDUE since ${zonedTime(pull.overdue_since)}` +
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
    $("sms-zone").textContent = `Times in ${ZONE}.`;
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


  // --- needs attention ------------------------------------------------------------------

  // Inbox kinds the gateway can process again: confirmations, M-Pesa Express results,
  // Transaction Status / Account Balance results, records recovered from M-Pesa's own.
  const REPLAYABLE_KINDS = ["confirmation", "stk_result", "result", "queue_timeout", "transaction"];
  const REPLAYABLE_STATUSES = ["failed", "needs_review", "received"];
  // A failed entry is replayed, not dismissed (it may carry money), unless it is a
  // validation, whose answer is given and gone (the server refuses the others).
  const DISMISSABLE_STATUSES = ["needs_review", "conflict"];
  const entryDismissable = (e) =>
    DISMISSABLE_STATUSES.includes(e.status) || (e.status === "failed" && e.kind === "validation");

  function renderAttention(attention) {
    attentionBlock("stuck_debits", attention.stuck_debits, "No stuck debits.", [
      { label: "Since", cell: (r) => when(r.updated_at) },
      { label: "Status", cell: (r) => status(r.status) },
      { label: "Channel", cell: (r) => channelName(r.channel) },
      { label: "Insuree", cell: (r) => insureeLink(r.chf_id) },
      { label: "Amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Transaction", cell: (r) => idLink("transaction", r.uuid) },
      { label: "Why", cls: "wrap", cell: (r) => r.note || "—" },
      { label: "", cls: "actions", cell: debitActions },
    ], (r) => ({ data: { uuid: r.uuid, status: r.status } }));
    attentionBlock("premiums_waiting", attention.premiums_waiting,
                   "Every premium is in openIMIS.", [
      { label: "Since", cell: (r) => when(r.created_at) },
      { label: "Insuree", cell: (r) => insureeLink(r.chf_id) },
      { label: "Amount", cls: "num", cell: (r) => money(r.amount, r.currency) },
      { label: "Receipt", cell: (r) => el("code", {}, r.receipt) },
      { label: "Transaction", cell: (r) => idLink("transaction", r.transaction_uuid) },
      { label: "Attempts", cls: "num", cell: (r) => String(r.insurance_write.attempts) },
      { label: "Last error", cls: "wrap", cell: (r) => r.insurance_write.last_error || "—" },
    ], (r) => ({ data: { uuid: r.uuid } }));
    const overdue = attention.mpesa_pull_overdue;
    attentionBlock("mpesa_pull_overdue", overdue, "The M-Pesa pull is within its reach.", [
      { label: "Not succeeded since", cell: (r) => when(r.since) },
      { label: "Shortcode", cell: (r) => el("code", {}, r.shortcode) },
      { label: "Last attempt", cell: (r) => when(r.last_attempt_at) },
      { label: "Last error", cls: "wrap", cell: (r) => r.last_error || "—" },
    ], (r) => ({ data: { shortcode: r.shortcode } }));
    const gaps = overdue ? overdue.oldest || [] : [];
    setMessage($("pull-overdue"), gaps.length
      ? `The M-Pesa pull of ${gaps.map((r) => r.shortcode).join(", ")} has not succeeded since ` +
        `${zonedTime(gaps[0].since)}, longer than it reaches back (48 hours): payments of ` +
        "that gap can only be recovered from the paybill's statement."
      : "");
  }

  function attentionBlock(key, item, empty, columns, rowAttrs) {
    const block = $(`attention-${key}`);
    const count = item ? item.count : 0;
    const oldest = item ? item.oldest || [] : [];
    setCount(block, count);
    const body = [table(columns, oldest, { empty, rowAttrs })];
    if (count > oldest.length) {
      body.push(el("p", { class: "hint" }, `The oldest ${oldest.length} of ${count} are shown.`));
    }
    block.querySelector('[data-role="body"]').replaceChildren(...body);
  }

  function setCount(block, count) {
    block.dataset.count = String(count);
    block.classList.toggle("calm", count === 0);
    block.querySelector('[data-role="count"]').textContent = String(count);
  }

  function debitActions(r) {
    if (r.status === "unknown") {
      return [actionButton("Mark succeeded", "resolve-succeeded", r),
              actionButton("Mark failed", "resolve-failed", r)];
    }
    if (r.status === "otp_sent") return actionButton("Expire", "expire", r);
    return el("span", { class: "muted" }, "in progress");
  }

  function insureeLink(chfId) {
    if (!chfId) return el("span", { class: "muted" }, "—");
    return el("button", { type: "button", class: "link", data: { open: "insuree", id: chfId },
                          on: { click: () => openDetail("insuree", chfId) } }, chfId);
  }

  // --- paged lists ----------------------------------------------------------------------

  // Each list reads one list endpoint a page at a time with its filters; `after` runs
  // with each answer (a block's count).
  const LISTS = {};

  function pagedList(key, options) {
    LISTS[key] = { key, offset: 0, limit: 20, after: () => {}, ...options };
    return LISTS[key];
  }

  function resetPages() {
    for (const list of Object.values(LISTS)) list.offset = 0;
  }

  function formFilters(form) {
    const values = {};
    for (const [name, value] of new FormData(form)) {
      if (String(value).trim()) values[name] = String(value).trim();
    }
    return values;
  }

  async function loadList(list) {
    const target = list.target();
    try {
      const answer = await api("GET", list.path,
                               { params: { ...list.params(), limit: list.limit,
                                           offset: list.offset } });
      if (list.offset > 0 && answer.offset >= answer.total) {
        // The page emptied (items were allocated or dismissed): show the last one left.
        list.offset = Math.max(0, Math.ceil(answer.total / list.limit) - 1) * list.limit;
        return loadList(list);
      }
      const body = [table(list.columns, answer.items, { empty: list.empty,
                                                        rowAttrs: list.rowAttrs })];
      if (answer.total > answer.items.length || list.offset > 0) body.push(pager(list, answer));
      target.replaceChildren(...body);
      list.after(answer);
      return answer;
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        target.replaceChildren(el("p", { class: "error" }, `Could not load: ${messageOf(error)}`));
      }
      return null;
    }
  }

  function pager(list, answer) {
    const first = answer.total ? answer.offset + 1 : 0;
    const last = answer.offset + answer.items.length;
    const go = (offset) => { list.offset = Math.max(0, offset); loadList(list); };
    return el("div", { class: "pager", data: { list: list.key } },
      el("button", { type: "button", class: "secondary small", data: { role: "previous" },
                     disabled: list.offset === 0,
                     on: { click: () => go(list.offset - list.limit) } }, "Previous"),
      el("span", { class: "muted", data: { role: "shown" } },
         `${first}–${last} of ${answer.total}`),
      el("button", { type: "button", class: "secondary small", data: { role: "next" },
                     disabled: last >= answer.total,
                     on: { click: () => go(list.offset + list.limit) } }, "Next"));
  }

  function listFilters(formId, list) {
    const form = $(formId);
    const reload = (event) => {
      if (event) event.preventDefault();
      list.offset = 0;
      loadList(list);
    };
    form.addEventListener("submit", reload);
    form.addEventListener("change", (event) => {
      if (event.target.tagName === "SELECT") reload();
    });
  }

  const paymentRow = (p) => ({ data: { transId: p.trans_id, billRef: p.bill_ref,
                                       status: p.status } });

  pagedList("unmatched", {
    target: () => $("attention-c2b_unmatched").querySelector('[data-role="body"]'),
    path: "/c2b/payments",
    params: () => ({ status: "unmatched", sort: "received_at" }),
    limit: 10,
    empty: "No unmatched payments.",
    columns: [
      { label: "Received", cell: (p) => when(p.received_at) },
      { label: "TransID", cell: (p) => idLink("payment", p.trans_id) },
      { label: "Account", cell: (p) => p.bill_ref || "—" },
      { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
      { label: "Why", cls: "wrap", cell: (p) => el("span", { title: p.unmatched_reason },
                                                    p.reason_text || p.unmatched_reason || "—") },
      { label: "", cls: "actions", cell: (p) => allocateButton(p) },
    ],
    rowAttrs: paymentRow,
    after: (answer) => setCount($("attention-c2b_unmatched"), answer.total),
  });

  pagedList("review", {
    target: () => $("review-items").querySelector('[data-role="body"]'),
    path: "/review-items",
    params: () => ({ kind: $("review-kind").value }),
    limit: 10,
    empty: "Nothing to review.",
    columns: [
      { label: "When", cell: (r) => when(r.at) },
      { label: "What", cell: reviewSubject },
      { label: "Status", cell: (r) => status(r.status) },
      { label: "Why", cls: "wrap", cell: (r) => el("span", { data: { role: "reasons" } },
                                                    (r.reasons || []).join("; ") || "—") },
      { label: "Summary", cls: "wrap", cell: (r) => r.summary },
      { label: "", cls: "actions", cell: reviewActions },
    ],
    rowAttrs: (r) => ({ data: { kind: r.kind, id: r.id, status: r.status } }),
    after: (answer) => setCount($("review-items"), answer.total),
  });

  // A review item names its payment, its callback, or (refused by openIMIS) the premium,
  // read through the transaction that paid it.
  function reviewSubject(r) {
    if (r.kind === "c2b_payment") return ["payment ", idLink("payment", r.id)];
    if (r.kind === "premium") {
      return ["premium ", idLink("transaction", r.links.self.split("/").pop())];
    }
    return ["callback ", idLink("inbox", r.id)];
  }

  function reviewActions(r) {
    if (r.kind === "c2b_payment") return actionButton("Dismiss", "dismiss-review", r);
    if (r.kind === "premium") return actionButton("Send again", "send-premium", r);
    return [
      REPLAYABLE_STATUSES.includes(r.status) ? actionButton("Replay", "replay", r) : null,
      DISMISSABLE_STATUSES.includes(r.status) ? actionButton("Dismiss", "dismiss-entry", r) : null,
    ];
  }

  pagedList("payments", {
    target: () => $("payments-list"),
    path: "/c2b/payments",
    params: () => ({ ...rangeParams(), ...formFilters($("payments-filters")) }),
    empty: "No paybill payments in this window.",
    columns: [
      { label: "Time", cell: (p) => when(p.trans_time) },
      { label: "TransID", cell: (p) => idLink("payment", p.trans_id) },
      { label: "Account", cell: (p) => p.bill_ref || "—" },
      { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
      { label: "Payer", cell: (p) => p.msisdn || "—" },
      { label: "Status", cls: "wrap", cell: (p) => [status(p.status),
          p.needs_review ? el("span", { class: "status status-needs_review" }, "review") : null,
          p.reason_text ? el("span", { class: "sub" }, p.reason_text) : null] },
      { label: "", cls: "actions", cell: (p) => p.status === "unmatched" ? allocateButton(p) : null },
    ],
    rowAttrs: paymentRow,
  });

  pagedList("transactions", {
    target: () => $("transactions-list"),
    path: "/transactions",
    params: () => ({ ...rangeParams(), currency: $("currency").value,
                     ...formFilters($("transactions-filters")) }),
    empty: "No transactions in this window.",
    columns: [
      { label: "Created", cell: (t) => when(t.created_at) },
      { label: "Transaction", cell: (t) => idLink("transaction", t.uuid) },
      { label: "Channel", cell: (t) => channelName(t.channel) },
      { label: "Status", cell: (t) => status(t.status) },
      { label: "Insuree", cell: (t) => insureeLink(t.chf_id) },
      { label: "Amount", cls: "num", cell: (t) => money(t.amount, t.currency) },
      { label: "Reference", cls: "wrap", cell: (t) => el("code", {},
          t.mpesa_receipt || t.provider_reference || "—") },
      { label: "Receipt", cell: (t) => t.settlement && t.settlement.receipt
          ? el("code", {}, t.settlement.receipt) : el("span", { class: "muted" }, "—") },
    ],
    rowAttrs: (t) => ({ data: { uuid: t.uuid, status: t.status, channel: t.channel } }),
  });

  const SOURCES = { daraja_c2b: "M-Pesa paybill", daraja_stk: "M-Pesa Express",
                    daraja_result: "M-Pesa result", daraja_pull: "M-Pesa pull",
                    statement: "statement", africastalking: "SMS report" };

  pagedList("inbox", {
    target: () => $("inbox-list"),
    path: "/c2b/inbox",
    params: () => ({ ...rangeParams(), ...formFilters($("inbox-filters")) }),
    empty: "No callbacks in this window.",
    columns: [
      { label: "Received", cell: (e) => when(e.received_at) },
      { label: "Entry", cell: (e) => idLink("inbox", e.id) },
      { label: "Source", cell: (e) => SOURCES[e.source] || e.source },
      { label: "Kind", cell: (e) => e.kind },
      { label: "Status", cell: (e) => status(e.status) },
      { label: "TransID", cell: (e) => e.trans_id ? idLink("payment", e.trans_id) : "—" },
      { label: "Problem", cls: "wrap", cell: (e) => e.failure
          ? `${e.failure.type}: ${e.failure.message}` : e.errors ? text(e.errors) : "—" },
    ],
    rowAttrs: (e) => ({ data: { id: e.id, status: e.status, kind: e.kind } }),
  });

  // --- the operator actions ----------------------------------------------------------------

  function actionButton(label, kind, row) {
    return el("button", { type: "button", class: "small", data: { action: kind },
                          on: { click: () => openAction(kind, row) } }, label);
  }

  function allocateButton(payment) {
    return el("button", { type: "button", class: "small", data: { action: "allocate" },
                          on: { click: () => openAllocate(payment) } }, "Allocate");
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
    replay: {
      title: "Replay the callback",
      subject: (r) => `Inbox entry ${r.id} (${r.status}) is processed again. The answer says ` +
                      "what changed, if anything.",
      check: checkReplayable,
      submit: (r, f) => api("POST", `/c2b/inbox/${encodeURIComponent(r.id)}/replay`,
                            { body: { reason: f.reason } }),
      // A replay that changed nothing is said plainly, without a success's colour.
      done: (r, answer) => ({ text: `Inbox entry ${r.id} replayed: ${answer.message}`,
                              tone: answer.changed ? "good" : "neutral" }),
    },
    "dismiss-entry": {
      title: "Dismiss the callback",
      subject: (r) => `Inbox entry ${r.id} (${r.status}) becomes dismissed: kept with your ` +
                      "reason, never replayed. No money moves.",
      submit: (r, f) => api("POST", `/c2b/inbox/${encodeURIComponent(r.id)}/dismiss`,
                            { body: { reason: f.reason } }),
      done: (r, answer) => `Inbox entry ${r.id} is now ${answer.status}.`,
    },
    "send-premium": {
      title: "Send the premium to openIMIS again",
      subject: (r) => `${r.summary}. openIMIS refused it: put that right in openIMIS first. ` +
                      "Before it is sent, openIMIS is asked again whether it has it already " +
                      "and whether the policy still awaits payment.",
      submit: (r, f) => api("POST", `/premiums/${encodeURIComponent(r.id)}/write`,
                            { body: { reason: f.reason } }),
      done: (r) => `Premium ${r.id} waits to be sent to openIMIS again.`,
    },
    "dismiss-review": {
      title: "Dismiss the payment's review",
      subject: (r) => `Payment ${r.id || r.trans_id}: its open review flags are kept with your ` +
                      "reason and leave this list. Its status does not change.",
      submit: (r, f) => api("POST",
                            `/c2b/payments/${encodeURIComponent(r.id || r.trans_id)}/review/dismiss`,
                            { body: { reason: f.reason } }),
      done: (r, answer) => `Payment ${answer.trans_id}: review dismissed (${answer.status}).`,
    },
  };

  // A callback of a kind that is never replayed (a validation: its answer cannot be given
  // again) is said so before the operator gives a reason.
  async function checkReplayable(row) {
    const entry = await api("GET", `/c2b/inbox/${encodeURIComponent(row.id)}`);
    if (!REPLAYABLE_KINDS.includes(entry.kind)) {
      return `A ${entry.kind} is never replayed (its answer cannot be given again): dismiss it ` +
             "instead.";
    }
    return null;
  }

  async function openAction(kind, row) {
    const action = ACTIONS[kind];
    state.action = { kind, row };
    $("action-form").dataset.action = kind;
    $("action-title").textContent = action.title;
    $("action-subject").textContent = action.subject(row);
    show($("action-reference-field"), Boolean(action.reference));
    $("action-reference").required = Boolean(action.reference);
    for (const id of ["action-reference", "action-reason"]) $(id).value = "";
    setMessage($("action-error"), "");
    $("action-submit").disabled = false;
    $("action-dialog").showModal();
    (action.reference ? $("action-reference") : $("action-reason")).focus();
    if (action.check) {
      try {
        const refusal = await action.check(row);
        if (refusal && state.action && state.action.row === row) {
          setMessage($("action-error"), refusal);
          $("action-submit").disabled = true;
        }
      } catch (error) {
        if (!(error instanceof SignedOut)) setMessage($("action-error"), messageOf(error));
      }
    }
  }

  async function submitAction(event) {
    event.preventDefault();
    if (!state.action) return;
    const { kind, row } = state.action;
    const action = ACTIONS[kind];
    const fields = { reference: $("action-reference").value.trim(),
                     reason: $("action-reason").value.trim() };
    $("action-submit").disabled = true;
    setMessage($("action-error"), "");
    try {
      const answer = await action.submit(row, fields);
      $("action-dialog").close();
      state.action = null;
      flash(action.done(row, answer));
      afterAction();
    } catch (error) {
      if (!(error instanceof SignedOut)) setMessage($("action-error"), messageOf(error));
    } finally {
      $("action-submit").disabled = false;
    }
  }

  // After an action: the dashboard again, and the detail shown, if any, as it is now.
  function afterAction() {
    load();
    if ($("detail-dialog").open && state.detail.length) {
      const shown = state.detail[state.detail.length - 1];
      showDetail(shown.kind, shown.id);
    }
  }

  let flashTimer = null;
  function flash(message) {
    const { text, tone } = typeof message === "string" ? { text: message, tone: "good" } : message;
    const node = $("flash");
    node.classList.toggle("neutral", tone === "neutral");
    node.dataset.tone = tone;
    setMessage(node, text);
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => setMessage(node, ""), 15000);
  }

  // --- allocating an unmatched payment: the picker -----------------------------------

  function openAllocate(payment) {
    state.allocating = payment;
    $("allocate-subject").textContent =
      `Payment ${payment.trans_id}: ${payment.amount} ${payment.currency} to account ` +
      `${payment.bill_ref || "(none)"}.`;
    $("allocate-reason").textContent = payment.reason_text || payment.unmatched_reason || "";
    $("allocate-q").value = "";
    $("allocate-note").value = "";
    setMessage($("allocate-error"), "");
    $("allocate-submit").disabled = false;
    $("allocate-candidates").replaceChildren(el("p", { class: "muted" }, "Looking for policies…"));
    $("allocate-dialog").showModal();
    loadCandidates();
  }

  async function loadCandidates() {
    const payment = state.allocating;
    if (!payment) return;
    const q = $("allocate-q").value.trim();
    const target = $("allocate-candidates");
    try {
      const answer = await api("GET",
                               `/c2b/payments/${encodeURIComponent(payment.trans_id)}/candidates`,
                               { params: { q } });
      if (state.allocating !== payment) return;
      $("allocate-reason").textContent = answer.reason_text || answer.unmatched_reason || "";
      const about = answer.account_insuree
        ? `The account number names insuree ${answer.account_insuree.chf_id} ` +
          `(${answer.account_insuree.name}); its policies awaiting payment come first.`
        : "No insuree has this account number: find the payer's insuree by number or name.";
      const fitting = answer.items.filter((c) => c.fits);
      target.replaceChildren(
        el("p", { class: "hint", data: { role: "account" } }, about),
        table([
          { label: "Choose", cell: (c) => el("input", {
              type: "radio", name: "allocate-policy", value: c.policy_uuid, disabled: !c.fits,
              checked: fitting.length === 1 && c.fits,
              "aria-label": `policy ${c.product_name} of insuree ${c.chf_id}` }) },
          { label: "Insuree", cls: "wrap", cell: (c) => [el("code", {}, c.chf_id), " ",
                                                         c.insuree_name] },
          { label: "Policy", cls: "wrap", cell: (c) => [c.product_name, " ",
                                                        el("span", { class: "muted" },
                                                           c.product_code)] },
          { label: "Expected", cls: "num", cell: (c) => money(c.expected.amount,
                                                              c.expected.currency) },
          { label: "Paid", cls: "num", cell: (c) => money(c.paid.amount, c.paid.currency) },
          { label: "Fits", cls: "wrap", cell: (c) => c.fits
              ? el("span", { class: "rate good" }, "fits")
              : el("span", { data: { role: "misfit" } }, c.reason_text) },
          { label: "Found by", cell: (c) => c.found_by === "account" ? "account" : "search" },
        ], answer.items, {
          empty: q ? `No policy awaiting payment for "${q}".`
                   : "No policy awaiting payment for this account: search for the insuree.",
          rowAttrs: (c) => ({ class: c.fits ? "choosable" : "misfit",
                              data: { policyUuid: c.policy_uuid, fits: c.fits },
                              on: { click: (event) => choose(event, c) } }),
        }));
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        target.replaceChildren(el("p", { class: "error" }, messageOf(error)));
      }
    }
  }

  function choose(event, candidate) {
    if (!candidate.fits || event.target.tagName === "INPUT") return;
    const radio = event.currentTarget.querySelector('input[type="radio"]');
    if (radio) radio.checked = true;
  }

  async function submitAllocation(event) {
    event.preventDefault();
    const payment = state.allocating;
    if (!payment) return;
    const chosen = $("allocate-candidates").querySelector('input[name="allocate-policy"]:checked');
    const note = $("allocate-note").value.trim();
    if (!chosen) {
      setMessage($("allocate-error"), "Choose a policy the payment fits.");
      return;
    }
    if (note.length < 3) {
      setMessage($("allocate-error"), "Say why this policy (at least 3 characters).");
      return;
    }
    $("allocate-submit").disabled = true;
    setMessage($("allocate-error"), "");
    try {
      const answer = await api("POST",
                               `/c2b/payments/${encodeURIComponent(payment.trans_id)}/allocate`,
                               { body: { policy_uuid: chosen.value, note } });
      $("allocate-dialog").close();
      state.allocating = null;
      flash(`Payment ${payment.trans_id} is now ${answer.status}` +
            (answer.receipt ? ` (receipt ${answer.receipt}).` : "."));
      afterAction();
    } catch (error) {
      if (!(error instanceof SignedOut)) setMessage($("allocate-error"), messageOf(error));
    } finally {
      $("allocate-submit").disabled = false;
    }
  }

  // --- search ---------------------------------------------------------------------------

  const KIND_WORDS = { c2b_payment: "payment", transaction: "transaction", insuree: "insuree",
                       inbox_entry: "callback", premium: "premium", policy: "policy" };

  async function search(event) {
    event.preventDefault();
    const q = $("search-q").value.trim();
    show($("search"), true);
    $("search-query").textContent = q ? `for “${q}”` : "";
    if (q.length < 3) {
      setMessage($("search-error"), "Type at least 3 characters: a TransID, a receipt, a " +
                                    "phone number, an insuree number or an id.");
      $("search-results").replaceChildren();
      return;
    }
    setMessage($("search-error"), "");
    $("search-submit").disabled = true;
    try {
      const answer = await api("GET", "/search", { params: { q, limit: 50 } });
      $("search-results").replaceChildren(table([
        { label: "When", cell: (r) => when(r.at) },
        { label: "What", cell: (r) => KIND_WORDS[r.kind] || r.kind },
        { label: "Found", cls: "wrap", cell: (r) => el("button", {
            type: "button", class: "link summary", data: { role: "open" },
            on: { click: () => openPath(r.links.self) } }, r.summary) },
        { label: "Matched", cell: (r) => r.match === "phone_masked"
            ? el("span", { class: "status status-unmatched sentence",
                           title: "only the first four and last three digits agree" },
                 "masked number: possibly another payer")
            : r.match.replace(/_/g, " ") },
        { label: "Status", cell: (r) => r.status ? status(r.status) : "—" },
      ], answer.items, {
        empty: `Nothing has the key “${q}”.`,
        rowAttrs: (r) => ({ data: { kind: r.kind, id: r.id, match: r.match } }),
      }));
    } catch (error) {
      if (!(error instanceof SignedOut)) setMessage($("search-error"), messageOf(error));
    } finally {
      $("search-submit").disabled = false;
    }
  }

  // --- the detail panel -------------------------------------------------------------------

  // The API paths the desk's items link to, and the detail that reads each.
  const DETAIL_PATHS = [
    [/^\/api\/v1\/c2b\/payments\/([^/]+)$/, "payment"],
    [/^\/api\/v1\/transactions\/([^/]+)$/, "transaction"],
    [/^\/api\/v1\/insurees\/([^/]+)\/overview$/, "insuree"],
    [/^\/api\/v1\/c2b\/inbox\/([^/]+)$/, "inbox"],
    [/^\/api\/v1\/policies\/([^/]+)$/, "policy"],
  ];

  function openPath(path) {
    for (const [pattern, kind] of DETAIL_PATHS) {
      const found = pattern.exec(path);
      if (found) return openDetail(kind, decodeURIComponent(found[1]));
    }
    return undefined;
  }

  // Opens a detail; from within the panel it is stacked, so Back returns.
  function openDetail(kind, id) {
    const dialog = $("detail-dialog");
    if (!dialog.open) state.detail = [];
    const shown = state.detail[state.detail.length - 1];
    if (!shown || shown.kind !== kind || shown.id !== id) state.detail.push({ kind, id });
    if (!dialog.open) dialog.showModal();
    return showDetail(kind, id);
  }

  function detailBack() {
    state.detail.pop();
    const shown = state.detail[state.detail.length - 1];
    if (shown) showDetail(shown.kind, shown.id);
    else $("detail-dialog").close();
  }

  const DETAILS = {
    payment: {
      title: (id) => `Paybill payment ${id}`,
      read: (id) => api("GET", `/c2b/payments/${encodeURIComponent(id)}`,
                        { params: { include: "deliveries,settlement" } }),
      render: paymentDetail,
    },
    transaction: {
      title: (id) => `Transaction ${id}`,
      read: (id) => api("GET", `/transactions/${encodeURIComponent(id)}`),
      render: transactionDetail,
    },
    insuree: {
      title: (id) => `Insuree ${id}`,
      read: (id) => api("GET", `/insurees/${encodeURIComponent(id)}/overview`),
      render: insureeDetail,
    },
    inbox: {
      title: (id) => `Callback ${id}`,
      read: (id) => api("GET", `/c2b/inbox/${encodeURIComponent(id)}`),
      render: inboxDetail,
    },
    policy: {
      title: (id) => `Policy ${id}`,
      read: (id) => api("GET", `/policies/${encodeURIComponent(id)}`),
      render: policyDetail,
    },
  };

  async function showDetail(kind, id) {
    const detail = DETAILS[kind];
    $("detail-dialog").dataset.kind = kind;
    $("detail-dialog").dataset.id = id;
    $("detail-title").textContent = detail.title(id);
    show($("detail-back"), state.detail.length > 1);
    setMessage($("detail-error"), "");
    $("detail-body").replaceChildren(el("p", { class: "muted" }, "Loading…"));
    try {
      const answer = await detail.read(id);
      const shown = state.detail[state.detail.length - 1];
      if (!shown || shown.kind !== kind || shown.id !== id) return;
      $("detail-body").replaceChildren(...[detail.render(answer)].flat().filter(Boolean));
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        $("detail-body").replaceChildren();
        setMessage($("detail-error"), messageOf(error));
      }
    }
  }

  function section(title, ...children) {
    return el("section", { class: "detail-section" }, el("h3", {}, title), ...children);
  }

  function json(value) {
    return el("pre", { class: "raw" }, JSON.stringify(value, null, 2));
  }

  function paymentDetail(p) {
    const actions = [];
    if (p.status === "unmatched") actions.push(allocateButton(p));
    if (p.needs_review) actions.push(actionButton("Dismiss review", "dismiss-review", p));
    const settlement = p.settlement;
    return [
      actions.length ? el("div", { class: "detail-actions" }, actions) : null,
      facts([
        ["TransID", fullId(p.trans_id)],
        ["Status", [status(p.status), p.needs_review
          ? el("span", { class: "status status-needs_review" }, "needs review") : null]],
        ["Why", p.reason_text],
        ["Amount", money(p.amount, p.currency)],
        ["Account", p.bill_ref ? insureeLink(p.bill_ref) : "(none)"],
        ["Payer", `${p.msisdn || "—"} (${p.msisdn_form})${p.payer_name ? `, ${p.payer_name}` : ""}`],
        ["Shortcode", p.shortcode],
        ["M-Pesa time", when(p.trans_time)],
        ["Received", when(p.received_at)],
        ["Policy", p.policy_uuid ? fullIdLink("policy", p.policy_uuid) : null],
        ["Transaction", p.transaction_uuid ? fullIdLink("transaction", p.transaction_uuid) : null],
        ["Receipt", p.receipt ? fullId(p.receipt) : null],
        ["Recovered", p.recovered ? `from ${p.recovered.source}` +
          (p.recovered.missing && p.recovered.missing.length
            ? `; missing ${p.recovered.missing.join(", ")}` : "") : null],
      ]),
      section("Allocation history", table([
        { label: "At", cell: (s) => when(s.at) },
        { label: "Status", cell: (s) => status(s.status) },
        { label: "By", cell: (s) => s.by },
        { label: "Why", cls: "wrap", cell: (s) => s.reason },
        { label: "Policy", cell: (s) => s.policy_uuid ? idLink("policy", s.policy_uuid) : "—" },
      ], p.allocation_history || [], { empty: "No allocation step recorded." })),
      (p.review || []).length ? section("Review flags", table([
        { label: "Flagged", cell: (f) => when(f.at) },
        { label: "Why", cls: "wrap", cell: (f) => f.reason_text || f.reason },
        { label: "Dismissed", cls: "wrap", cell: (f) => f.dismissed_at
            ? [when(f.dismissed_at), ` by ${f.dismissed_by}: ${f.dismissed_reason}`]
            : el("span", { class: "status status-needs_review" }, "open") },
      ], p.review)) : null,
      section("Settlement", settlement ? facts([
        ["Transaction", fullIdLink("transaction", settlement.transaction.uuid)],
        ["Status", status(settlement.transaction.status)],
        ["Premium", settlement.premium ? `${settlement.premium.receipt}: ` +
          `${settlement.premium.amount} ${settlement.premium.currency}` : "none"],
      ]) : el("p", { class: "empty" }, "Not settled: no transaction was made.")),
      section(`Deliveries (${(p.deliveries || []).length})`,
              ...(p.deliveries || []).map(deliveryBlock),
              (p.deliveries || []).length ? null
                : el("p", { class: "empty" }, "No callback named this TransID.")),
    ];
  }

  function fullIdLink(kind, id) {
    return el("span", { class: "id-line" }, fullId(id),
              el("button", { type: "button", class: "secondary small", data: { open: kind, id },
                             on: { click: () => openDetail(kind, id) } }, "Open"));
  }

  function deliveryBlock(d) {
    return el("div", { class: "delivery", data: { id: d.id } },
      facts([
        ["Entry", fullIdLink("inbox", d.id)],
        ["Source, kind", `${SOURCES[d.source] || d.source}, ${d.kind}`],
        ["Status", status(d.status)],
        ["Received", when(d.received_at)],
        ["Answered", d.answer ? el("code", {}, JSON.stringify(d.answer)) : null],
      ]),
      el("p", { class: "hint" }, `Raw body (${d.body_encoding}), as received:`),
      el("pre", { class: "raw", data: { role: "raw-body" } }, d.body));
  }

  function transactionDetail(t) {
    const actions = [];
    if (t.status === "unknown") actions.push(...debitActions(t));
    if (t.status === "otp_sent") actions.push(debitActions(t));
    const settlement = t.settlement;
    return [
      actions.length ? el("div", { class: "detail-actions" }, actions) : null,
      facts([
        ["Transaction", fullId(t.uuid)],
        ["Channel", channelName(t.channel)],
        ["Status", status(t.status)],
        ["Amount", money(t.amount, t.currency)],
        ["Insuree", insureeLink(t.chf_id)],
        ["Policy", fullIdLink("policy", t.policy_uuid)],
        ["Provider", t.psp_uuid ? el("code", {}, t.psp_uuid) : null],
        ["Provider reference", t.provider_reference ? fullId(t.provider_reference) : null],
        ["M-Pesa receipt", t.mpesa_receipt ? fullId(t.mpesa_receipt) : null],
        ["Phone", t.phone],
        ["Failure", t.failure ? `${t.failure.code}: ${t.failure.message}` : null],
        ["Created", [when(t.created_at), t.created_by ? ` by ${t.created_by}` : ""]],
        ["Updated", when(t.updated_at)],
        ["Settlement", settlement ? [status(settlement.status),
          settlement.receipt ? ` receipt ${settlement.receipt}` : "",
          settlement.reason ? ` (${settlement.reason})` : ""] : null],
      ]),
      section("History", table([
        { label: "At", cell: (h) => when(h.at) },
        { label: "From", cell: (h) => h.from ? status(h.from) : "—" },
        { label: "To", cell: (h) => status(h.to) },
        { label: "By", cell: (h) => h.actor },
        { label: "Why", cls: "wrap", cell: (h) => h.reason },
      ], t.history || [], { empty: "No history." })),
    ];
  }

  function insureeDetail(o) {
    const i = o.insuree;
    const more = (page) => page.total > page.items.length
      ? el("p", { class: "hint" }, `The newest ${page.items.length} of ${page.total}.`) : null;
    return [
      facts([
        ["Insuree", fullId(i.chf_id)],
        ["Name", `${i.first_name} ${i.last_name}`],
        ["Phone", i.phone || null],
        ["Qmoney wallet", i.wallet || null],
        ["SMS receipts", i.sms_opt_out ? "opted out" : null],
      ]),
      section(`Policies (${o.policies.total})`, table([
        { label: "Policy", cell: (p) => idLink("policy", p.uuid) },
        { label: "Product", cell: (p) => p.product_name },
        { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
        { label: "Status", cell: (p) => policyStatus(p.status) },
      ], o.policies.items, { empty: "No policies." }), more(o.policies)),
      section(`Premiums (${o.premiums.total})`, table([
        { label: "Receipt", cell: (p) => el("code", {}, p.receipt) },
        { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
        { label: "Paid", cell: (p) => when(p.pay_date) },
        { label: "Transaction", cell: (p) => idLink("transaction", p.transaction_uuid) },
      ], o.premiums.items, { empty: "No premiums." }), more(o.premiums)),
      section(`Paybill payments to ${i.chf_id} (${o.payments.total})`, table([
        { label: "Time", cell: (p) => when(p.trans_time) },
        { label: "TransID", cell: (p) => idLink("payment", p.trans_id) },
        { label: "Amount", cls: "num", cell: (p) => money(p.amount, p.currency) },
        { label: "Status", cell: (p) => status(p.status) },
      ], o.payments.items, { empty: "No paybill payments.", rowAttrs: paymentRow }),
      more(o.payments)),
      section(`Transactions (${o.transactions.total})`, table([
        { label: "Created", cell: (t) => when(t.created_at) },
        { label: "Transaction", cell: (t) => idLink("transaction", t.uuid) },
        { label: "Channel", cell: (t) => channelName(t.channel) },
        { label: "Amount", cls: "num", cell: (t) => money(t.amount, t.currency) },
        { label: "Status", cell: (t) => status(t.status) },
      ], o.transactions.items, { empty: "No transactions." }), more(o.transactions)),
    ];
  }

  function inboxDetail(e) {
    const actions = [];
    if (REPLAYABLE_KINDS.includes(e.kind) && REPLAYABLE_STATUSES.includes(e.status)) {
      actions.push(actionButton("Replay", "replay", e));
    }
    if (entryDismissable(e)) {
      actions.push(actionButton("Dismiss", "dismiss-entry", e));
    }
    return [
      actions.length ? el("div", { class: "detail-actions" }, actions) : null,
      facts([
        ["Entry", fullId(e.id)],
        ["Source, kind", `${SOURCES[e.source] || e.source}, ${e.kind}`],
        ["Status", status(e.status)],
        ["TransID", e.trans_id ? fullIdLink("payment", e.trans_id) : null],
        ["From", e.source_ip],
        ["Received", when(e.received_at)],
        ["Processed", e.processed_at ? when(e.processed_at) : null],
        ["Attempts", String(e.attempts)],
        ["Failure", e.failure ? `${e.failure.type}: ${e.failure.message}` : null],
        ["Unreadable", e.errors ? text(e.errors) : null],
        ["Dismissed", e.dismissal ? [when(e.dismissal.at), ` by ${e.dismissal.by} ` +
          `(was ${e.dismissal.from_status}): ${e.dismissal.reason}`] : null],
      ]),
      (e.replays || []).length ? section("Replays", table([
        { label: "At", cell: (r) => when(r.at) },
        { label: "By", cell: (r) => r.by },
        { label: "Why", cls: "wrap", cell: (r) => r.reason },
      ], e.replays)) : null,
      section("Answered", e.answer ? json(e.answer) : el("p", { class: "empty" }, "—")),
      section(`Raw body (${e.body_encoding}), as received`,
              el("pre", { class: "raw", data: { role: "raw-body" } }, e.body)),
    ];
  }

  const POLICY_STATUSES = { 1: "idle", 2: "active", 4: "suspended", 8: "expired", 16: "ready" };

  function policyStatus(value) {
    return el("span", { class: `status policy-${POLICY_STATUSES[value] || value}`,
                        title: `status ${value}` }, POLICY_STATUSES[value] || String(value));
  }

  function policyDetail(p) {
    return facts([
      ["Policy", fullId(p.uuid)],
      ["Insuree", insureeLink(p.chf_id)],
      ["Product", `${p.product_name} (${p.product_code})`],
      ["Amount", money(p.amount, p.currency)],
      ["Status", policyStatus(p.status)],
      ["Starts", p.start_date || null],
      ["Effective", p.effective_date || null],
      ["Expires", p.expiry_date || null],
    ]);
  }

  // --- exports and the month's close --------------------------------------------------

  function renderReports() {
    const { from, to } = range();
    $("exports-range").textContent = `(${zonedTime(from)} – ${zonedTime(to)})`;
    for (const link of document.querySelectorAll("[data-export]")) {
      link.setAttribute("href", exportHref(link.dataset.export));
    }
    closeLinks();
  }

  // The window in whole seconds (the file is named after its ends).
  function exportHref(name) {
    const { from, to } = range();
    const start = new Date(Math.floor(from.getTime() / 1000) * 1000).toISOString();
    const end = new Date(Math.ceil(to.getTime() / 1000) * 1000).toISOString();
    return `${API}/exports/${name}.csv?from=${encodeURIComponent(start)}` +
           `&to=${encodeURIComponent(end)}`;
  }

  async function downloadExport(event) {
    event.preventDefault();
    const link = event.currentTarget;
    link.setAttribute("href", exportHref(link.dataset.export));   // up to now
    await download(link, `${link.dataset.export}.csv`, $("reports-error"));
  }

  function closePeriod() {
    const input = $("close-period");
    if (!input.value) input.value = zoneDay(new Date()).slice(0, 7);
    return input.value;
  }

  function closeLinks() {
    const period = encodeURIComponent(closePeriod());
    $("close-csv").setAttribute("href", `${API}/reports/close?period=${period}&format=csv`);
    $("close-print").setAttribute("href", `${API}/reports/close?period=${period}&format=html`);
  }

  const CLOSE_FIGURES = [["received", "Received"], ["applied", "Applied"],
                         ["unmatched_at_end", "Unmatched at the end"],
                         ["recovered", "Recovered"], ["in_doubt", "In doubt"]];

  async function showClose(event) {
    if (event) event.preventDefault();
    closeLinks();
    setMessage($("reports-error"), "");
    try {
      const report = await api("GET", "/reports/close", { params: { period: closePeriod() } });
      const channels = report.channels || [];
      const label = (name) => (channels.find((c) => c.name === name) || {}).label || name;
      $("close-body").replaceChildren(
        el("p", { class: "hint", data: { role: "close-period" } },
           `${report.from} – ${report.to}, ${zonedTime(report.starts_at)} to ` +
           `${zonedTime(report.ends_at)}` + (report.complete ? "." : ": not ended, figures so far.")),
        table([
          { label: "Channel", cell: (r) => label(r.channel) },
          { label: "Currency", cell: (r) => r.currency },
          ...CLOSE_FIGURES.map(([name, title]) => ({
            label: title, cls: "num", cell: (r) => figure(r[name], r.currency, name) })),
        ], report.totals || [], {
          empty: "Nothing received or applied in this period.",
          rowAttrs: (r) => ({ data: { channel: r.channel, currency: r.currency } }),
        }));
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        setMessage($("reports-error"), `Could not read the close: ${messageOf(error)}`);
      }
    }
  }

  // --- start --------------------------------------------------------------------

  function start() {
    $("zone-label").textContent = `Times in ${ZONE} (${zoneParts(new Date()).timeZoneName})`;
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => {
      // Revoke the session on the server too; the page signs out whatever it answers.
      const refresh = sessionStorage.getItem(KEYS.refresh);
      if (refresh) send("POST", "/auth/logout", { body: { refresh_token: refresh } }).catch(() => {});
      sessionStorage.removeItem(KEYS.user);
      signOut("");
    });
    $("window").addEventListener("change", () => { resetPages(); chooseWindow(); });
    $("range-form").addEventListener("submit", applyRange);
    $("currency").addEventListener("change", () => { resetPages(); load(); });
    $("refresh-now").addEventListener("click", load);
    $("search-form").addEventListener("submit", search);
    $("review-kind").addEventListener("change", () => {
      LISTS.review.offset = 0;
      loadList(LISTS.review);
    });
    listFilters("payments-filters", LISTS.payments);
    listFilters("transactions-filters", LISTS.transactions);
    listFilters("inbox-filters", LISTS.inbox);
    for (const link of document.querySelectorAll("[data-export]")) {
      link.addEventListener("click", downloadExport);
    }
    $("close-form").addEventListener("submit", showClose);
    $("close-period").addEventListener("change", closeLinks);
    $("close-csv").addEventListener("click", (event) => {
      event.preventDefault();
      closeLinks();
      download($("close-csv"), `close-${closePeriod()}.csv`, $("reports-error"));
    });
    $("close-print").addEventListener("click", (event) => {
      event.preventDefault();
      closeLinks();
      download($("close-print"), `close-${closePeriod()}.html`, $("reports-error"));
    });
    $("reconciliation-csv").addEventListener("click", (event) => {
      event.preventDefault();
      download($("reconciliation-csv"), "reconciliation.csv", $("reconciliation-error"));
    });
    $("balance-check").addEventListener("click", requestBalance);
    $("action-form").addEventListener("submit", submitAction);
    $("action-cancel").addEventListener("click", () => {
      state.action = null;
      $("action-dialog").close();
    });
    $("action-dialog").addEventListener("close", () => { state.action = null; });
    $("allocate-form").addEventListener("submit", submitAllocation);
    $("allocate-find").addEventListener("click", loadCandidates);
    $("allocate-q").addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); loadCandidates(); }
    });
    $("allocate-cancel").addEventListener("click", () => $("allocate-dialog").close());
    $("allocate-dialog").addEventListener("close", () => { state.allocating = null; });
    $("detail-close").addEventListener("click", () => $("detail-dialog").close());
    $("detail-back").addEventListener("click", detailBack);
    $("detail-dialog").addEventListener("close", () => { state.detail = []; });
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => { if (state.chart) renderChart(); }, 150);
    });
    if (sessionStorage.getItem(KEYS.access)) signedIn();
    else signOut("");
  }

  start();
})();
