// aviary's web view: reads the JSON API of the aviaryd that served this page (relative URLs,
// so it works through `aviary ui`'s forwarder and on TCP), redraws every 2 s and on every
// event of the live Server-Sent Events stream. Read-only: it sends GETs and nothing else.
"use strict";

const REFRESH_MS = 2000;
// Where the API is: the page's own address less "/ui/...": "" when aviaryd serves it, "/KEY"
// through `aviary ui`'s forwarder (whose every path starts with its key).
const BASE = location.pathname.replace(/\/ui\/.*$/, "");
let token = sessionStorage.getItem("aviary-token") || "";
let lastEventId = 0;

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function get(path) {
  const r = await fetch(BASE + path, { headers: headers(), cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    document.getElementById("login").hidden = false;
    throw new Error("this listener wants a bearer token with scope read");
  }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c === null || c === undefined ? "" : c);
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function percent(bp) {
  return (bp / 100).toFixed(bp % 100 ? 2 : 0) + "%";
}

function stepText(s) {
  if ("setWeight" in s) return s.setWeight + "%";
  if ("pause" in s) return s.pause && s.pause.duration ? "pause " + s.pause.duration : "pause";
  if ("analysis" in s) return "analysis";
  return Object.keys(s)[0] || "?";
}

function metricRow(m) {
  return el("tr", {},
    el("td", {}, m.name),
    el("td", {}, m.value === null ? "unreadable" : String(+m.value.toFixed(4))),
    el("td", { class: "verdict-" + m.verdict }, m.verdict),
    el("td", {}, m.detail || (m.threshold === null ? "" : "threshold " + m.threshold)),
    el("td", {}, m.samples + " req"));
}

function splitView(service, traffic, rollout) {
  const w = traffic.weights || { stable: 10000, canary: 0 };
  const v = traffic.versions || {};
  const stableReq = v.stable ? v.stable.requests : 0;
  const canaryReq = v.canary ? v.canary.requests : 0;
  const box = el("div", { class: "split", "data-service": service.name });
  box.append(el("h2", {}, service.name, " ",
    el("small", {}, traffic.listen ? "listens on " + traffic.listen : "no listener")));
  const bar = el("div", { class: "bar" });
  bar.append(el("div", { class: "stable weight-stable", style: "" }, "stable " + percent(w.stable)));
  bar.lastChild.style.width = Math.max(w.stable / 100, w.stable ? 8 : 0) + "%";
  bar.lastChild.setAttribute("data-weight", String(w.stable));
  if (w.canary > 0 || rollout) {
    bar.append(el("div", { class: "canary weight-canary" }, "canary " + percent(w.canary)));
    bar.lastChild.style.width = Math.max(w.canary / 100, 8) + "%";
    bar.lastChild.setAttribute("data-weight", String(w.canary));
  }
  box.append(bar);
  const observed = stableReq + canaryReq;
  box.append(el("p", { class: "observed" },
    "observed: stable " + stableReq + " req" + (observed ? " (" + (100 * stableReq / observed).toFixed(1) + "%)" : "") +
    ", canary " + canaryReq + " req" + (observed ? " (" + (100 * canaryReq / observed).toFixed(1) + "%)" : "")));
  if (rollout) {
    box.append(el("p", {},
      "rollout " + rollout.id + ": ",
      el("span", { class: "rollout-from", "data-version": rollout.from || "" }, rollout.from || "nothing"),
      " → ",
      el("span", { class: "rollout-to", "data-version": rollout.to }, rollout.to),
      ", ", el("span", { class: "phase-" + rollout.phase }, rollout.phase), ": " + (rollout.message || "")));
    const steps = el("ol", { class: "steps" });
    (rollout.steps || []).forEach((s, i) => {
      const cls = i < rollout.currentStepIndex ? "done" : i === rollout.currentStepIndex ? "current" : "";
      steps.append(el("li", { class: cls }, stepText(s)));
    });
    box.append(steps);
    const last = rollout.analysis && rollout.analysis.last;
    if (last && last.metrics) {
      const t = el("table", { class: "analysis" },
        el("thead", {}, el("tr", {}, ...["Metric", "Measured", "Verdict", "Against", "Samples"].map(h => el("th", {}, h)))));
      const b = el("tbody");
      last.metrics.forEach(m => b.append(metricRow(m)));
      t.append(b);
      box.append(el("p", {}, "last analysis window: ", el("span", { class: "verdict-" + last.verdict }, last.verdict)), t);
    }
  }
  return box;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [version, services, instances, images] = await Promise.all([
      get("/v1/version"), get("/v1/services?limit=1000"), get("/v1/instances?limit=1000"), get("/v1/images?limit=1000")]);
    document.getElementById("daemon").textContent =
      "aviaryd " + version.version + (version.accel ? ", guests under " + version.accel : "");
    const rows = [], splits = [];
    for (const s of services.items) {
      rows.push(el("tr", { "data-service": s.name },
        el("td", {}, s.name), el("td", { "data-version": s.stable_version || "" }, s.stable_version || "—"),
        el("td", {}, String(s.replicas)), el("td", {}, s.listen || "—"),
        el("td", {}, s.rollout ? s.rollout.phase + " → " + s.rollout.to : "—")));
      const traffic = await get("/v1/services/" + encodeURIComponent(s.name) + "/traffic");
      let rollout = null;
      if (s.rollout) rollout = await get("/v1/services/" + encodeURIComponent(s.name) + "/rollouts/current");
      splits.push(splitView(s, traffic, rollout));
    }
    fill(document.querySelector("#services tbody"), rows);
    document.getElementById("splits").replaceChildren(...splits);
    fill(document.querySelector("#instances tbody"), instances.items
      .filter(i => i.state !== "stopped")
      .map(i => el("tr", { "data-instance": i.id },
        el("td", {}, i.id), el("td", {}, i.service || ""), el("td", { "data-version": i.version }, i.version),
        el("td", { class: "state-" + i.state }, i.state), el("td", {}, i.ip || "—"), el("td", {}, i.accel || "—"),
        el("td", {}, i.timings && i.timings.boot_ms !== null ? i.timings.boot_ms + " ms" : "—"))));
    const versionRows = [];
    for (const image of images.items) {
      const vs = await get("/v1/images/" + encodeURIComponent(image.name) + "/versions?limit=1000");
      for (const v of vs.items)
        versionRows.push(el("tr", { "data-version": image.name + ":" + v.version },
          el("td", {}, image.name + ":" + v.version), el("td", { class: v.state }, v.state),
          el("td", {}, v.digest.slice(0, 19) + "…"), el("td", {}, v.created_at)));
    }
    fill(document.querySelector("#versions tbody"), versionRows);
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    status.textContent = String(e.message || e);
  }
}

function addEvent(e) {
  const list = document.getElementById("events");
  const li = el("li", { "data-event": String(e.id) },
    e.time + "  " + e.actor + "  " + e.action + "  " + e.resource + "  " + e.result);
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

// The event stream through fetch, not EventSource: EventSource cannot send the bearer token.
// Reconnects with Last-Event-ID, so no event is missed or shown twice.
async function follow() {
  const state = document.getElementById("events-state");
  for (;;) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastEventId) h["Last-Event-ID"] = String(lastEventId);
      const r = await fetch(BASE + "/v1/events?follow=true", { headers: h, cache: "no-store" });
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      state.textContent = "live";
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = parseInt(line.slice(3).trim(), 10);
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (!data) continue; // a heartbeat
          if (id) lastEventId = id;
          addEvent(JSON.parse(data));
          refresh();
        }
      }
    } catch (e) {
      state.textContent = "reconnecting (" + (e.message || e) + ")";
    }
    await new Promise(ok => setTimeout(ok, 1000));
  }
}

document.getElementById("login").addEventListener("submit", ev => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("aviary-token", token);
  document.getElementById("login").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
follow();
