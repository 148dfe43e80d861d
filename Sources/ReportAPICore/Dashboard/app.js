// The dashboard: reads the public report API only, so what it shows is exactly what the API answers.
"use strict";

const byId = (id) => document.getElementById(id);
const weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
let token = sessionStorage.getItem("coworking-api-token");
let summaryTag = null;
let dailyChart = null;

/// GET an /api/ path; a 401 asks for the token and stops this load.
async function api(path, params = {}, headers = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== undefined && value !== ""));
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path + (query.size ? "?" + query : ""), { headers });
  if (response.status === 401) {
    byId("token-form").hidden = false;
    byId("token").focus();
    throw new Error("The reports need an API token.");
  }
  if (response.status !== 200 && response.status !== 304) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `${path} answered ${response.status}`);
  }
  return response;
}

/// Today in `zone`, as YYYY-MM-DD.
function today(zone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date());
}

function daysBefore(day, count) {
  const date = new Date(day + "T00:00:00Z");
  date.setUTCDate(date.getUTCDate() - count);
  return date.toISOString().slice(0, 10);
}

/// The query the controls describe: zone, range and space.
function selection() {
  const zone = byId("zone").value.trim();
  const range = byId("range").value;
  const last = today(zone);
  let from;
  let to = last;
  if (range === "year") from = last.slice(0, 4) + "-01-01";
  else if (range === "all") to = undefined;
  else from = daysBefore(last, Number(range) - 1);
  return { tz: zone, from, to, space: byId("space").value };
}

/// An instant (RFC 3339) in `zone`, as YYYY-MM-DD HH:MM:SS followed by the zone's name; the date alone with `dateOnly`.
function inZone(instant, zone, dateOnly = false) {
  const fields = { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" };
  if (!dateOnly) Object.assign(fields, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", fields).formatToParts(new Date(instant))
    .map(({ type, value }) => [type, value]));
  const day = `${parts.year}-${parts.month}-${parts.day}`;
  return dateOnly ? day : `${day} ${parts.hour}:${parts.minute}:${parts.second} ${zone}`;
}

function showError(error) {
  byId("error").textContent = error ? error.message : "";
  byId("error").hidden = !error;
}

function cell(tag, text, attributes = {}) {
  const element = document.createElement(tag);
  element.textContent = text;
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

/// `unique` is `{ error }` when unique_visitors did not answer (a long range on a large history can pass the
/// statement timeout): the other reports are shown without it.
function renderSummary(summary, unique, zone) {
  const figures = [
    ["Check-ins", summary.checkins.toLocaleString()],
    ["Members who came", summary.users.toLocaleString()],
    ["Unique visitors in the range", unique.error ? "not available" : unique.total.toLocaleString()],
    ["First check-in", summary.first_checkin_at ? inZone(summary.first_checkin_at, zone) : "none"],
    ["Last check-in", summary.last_checkin_at ? inZone(summary.last_checkin_at, zone) : "none"],
  ];
  byId("summary").replaceChildren(...figures.map(([term, value]) => {
    const group = document.createElement("div");
    group.append(cell("dt", term), cell("dd", value));
    return group;
  }));
  const folded = summary.last_folded_at;
  byId("freshness").textContent = folded
    ? `Data as of the last fold, ${inZone(folded, zone)}`
    : "Nothing folded yet";
  byId("freshness").dataset.lastFolded = folded ?? "";
}

function renderDaily(days, unique) {
  const labels = Object.keys(days);
  const data = Object.values(days);
  const datasets = [{ label: "Visits", data, backgroundColor: "#2563eb" }];
  if (!unique.error) {
    datasets.push({ type: "line", label: "Unique visitors", data: labels.map((day) => unique.days[day] ?? 0),
      borderColor: "#ea580c", backgroundColor: "#ea580c", pointRadius: 2 });
  }
  byId("unique-error").textContent = unique.error ? "Unique visitors: " + unique.error.message : "";
  byId("unique-error").hidden = !unique.error;
  if (typeof Chart === "undefined") {
    byId("chart-missing").hidden = false;
    return;
  }
  if (!dailyChart) {
    dailyChart = new Chart(byId("daily-chart"), {
      type: "bar",
      data: { labels, datasets },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } },
    });
  } else {
    dailyChart.data.labels = labels;
    dailyChart.data.datasets = datasets;
    dailyChart.update();
  }
}

/// A heat map cell's colors: `share` of the way from white to the accent blue, opaque whatever the page's scheme, and
/// black or white text, whichever contrasts more with it (WCAG's ratio, at least 4.58 either way).
function heatColors(share) {
  const rgb = [37, 99, 235].map((channel) => Math.round(255 - (255 - channel) * share * 0.85));
  const linear = rgb.map((channel) => {
    const value = channel / 255;
    return value <= 0.03928 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  const onBlack = (luminance + 0.05) / 0.05;
  const onWhite = 1.05 / (luminance + 0.05);
  return { background: `rgb(${rgb.join(", ")})`, text: onBlack >= onWhite ? "black" : "white" };
}

function renderHeatmap(cells) {
  const table = byId("heatmap");
  const max = Math.max(1, ...Object.values(cells).flatMap((hours) => Object.values(hours)));
  const head = document.createElement("tr");
  head.append(cell("th", "Day", { scope: "col" }), ...Array.from({ length: 24 }, (_, hour) =>
    cell("th", String(hour).padStart(2, "0"), { scope: "col" })));
  const rows = Object.entries(cells).map(([weekday, hours]) => {
    const row = document.createElement("tr");
    row.append(cell("th", weekdays[weekday - 1], { scope: "row" }));
    for (const [hour, visits] of Object.entries(hours)) {
      const td = cell("td", String(visits), { "data-weekday": weekday, "data-hour": hour });
      const colors = heatColors(visits / max);
      td.style.backgroundColor = colors.background;
      td.style.color = colors.text;
      row.append(td);
    }
    return row;
  });
  table.replaceChildren(table.querySelector("caption"), head, ...rows);
}

function renderMembers(members, zone) {
  byId("members").tBodies[0].replaceChildren(...members.map((member) => {
    const row = document.createElement("tr");
    row.append(cell("td", String(member.user_id)), cell("td", String(member.visits)),
      cell("td", member.joined_at ? inZone(member.joined_at, zone, true) : "not recorded"));
    return row;
  }));
}

/// Reads every report for the current selection and shows them.
async function load() {
  try {
    const query = selection();
    const [summary, days, unique, cells, members] = await Promise.all([
      api("/api/reports/summary").then((r) => { summaryTag = r.headers.get("ETag"); return r.json(); }),
      api("/api/reports/daily_usage", { ...query, fill: "zero" }).then((r) => r.json()),
      api("/api/reports/unique_visitors", { ...query, fill: "zero" }).then((r) => r.json(), (error) => ({ error })),
      api("/api/reports/weekday_hours", query).then((r) => r.json()),
      api("/api/reports/top_members", { ...query, limit: 10 }).then((r) => r.json()),
    ]);
    renderSummary(summary, unique, query.tz);
    renderDaily(days, unique);
    renderHeatmap(cells);
    renderMembers(members, query.tz);
    showError(null);
    document.body.dataset.loaded = JSON.stringify(query);
  } catch (error) {
    showError(error);
  }
}

/// Every five seconds, asks whether the rollups changed (304 when not), and shows the new figures when they did.
async function watch() {
  try {
    const response = await api("/api/reports/summary", {}, summaryTag ? { "If-None-Match": summaryTag } : {});
    if (response.status === 200 && response.headers.get("ETag") !== summaryTag) await load();
  } catch (error) {
    showError(error);
  }
}

async function downloadCSV(event) {
  event.preventDefault();
  const report = event.target.dataset.report;
  const params = report === "top_members" ? { ...selection(), limit: 100 } : selection();
  try {
    const blob = await (await api("/api/reports/" + report, { ...params, format: "csv" })).blob();
    const link = cell("a", "", { href: URL.createObjectURL(blob), download: `${report}.csv` });
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) {
    showError(error);
  }
}

let watching = null;

/// Reads the zones and spaces to offer, then the reports, and watches for folds.
async function start() {
  try {
    const filters = await (await api("/api/reports/filters")).json();
    byId("zones").replaceChildren(...filters.zones.map((zone) => cell("option", "", { value: zone })));
    if (!byId("zone").value) byId("zone").value = filters.default_zone;
    byId("space").replaceChildren(cell("option", "All spaces", { value: "" }),
      ...filters.spaces.map((space) => cell("option", space, { value: space })));
  } catch (error) {
    showError(error);
    return;
  }
  const requested = new URLSearchParams(location.search);
  for (const id of ["zone", "range", "space"]) if (requested.has(id)) byId(id).value = requested.get(id);
  await load();
  watching ??= setInterval(watch, 5000);
}

function listen() {
  byId("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  for (const id of ["range", "space"]) byId(id).addEventListener("change", load);
  byId("zone").addEventListener("change", load);
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = byId("token").value;
    sessionStorage.setItem("coworking-api-token", token);
    byId("token-form").hidden = true;
    start();
  });
  for (const link of document.querySelectorAll("a.csv")) link.addEventListener("click", downloadCSV);
}

listen();
start();
