// Incident list and detail: live refresh from /api/events (`incidents`), operator actions
// through /api/incidents/{id}/actions/{action}; no reload, no framework. Text only, never HTML.
"use strict";
(function () {
  var words = document.getElementById("incident-words");
  if (!words) { return; }
  var w = words.dataset;
  var status = document.getElementById("live-status");
  var csrf = document.querySelector("meta[name=csrf-token]").content;
  var acted = null; // {state, until}: the state an action answered, until the views show it

  function stateWord(state) { return w["state" + state.charAt(0).toUpperCase() + state.slice(1)] || state; }
  function levelWord(level) { return w["level" + level.charAt(0).toUpperCase() + level.slice(1)] || level; }

  function cell(row, value) {
    var td = document.createElement("td");
    if (value instanceof Node) { td.appendChild(value); } else { td.textContent = value; }
    row.appendChild(td);
    return td;
  }

  function levelTag(level) {
    var tag = document.createElement("span");
    tag.className = "tile-mini"; tag.dataset.level = level;
    var icon = document.createElement("span"); icon.className = "icon"; icon.setAttribute("aria-hidden", "true");
    tag.appendChild(icon); tag.appendChild(document.createTextNode(levelWord(level)));
    return tag;
  }

  function drawList(page) {
    var body = document.querySelector("#incident-list tbody");
    body.textContent = "";
    page.items.forEach(function (i) {
      var row = document.createElement("tr");
      row.className = "incident"; row.dataset.incident = i.incident_id; row.dataset.state = i.state;
      cell(row, levelTag(i.severity));
      cell(row, stateWord(i.state)).className = "state";
      cell(row, i.camera_id);
      cell(row, i.rule || i.family);
      var time = document.createElement("time"); time.setAttribute("datetime", i.opened_at);
      time.textContent = new Date(i.opened_at).toLocaleString();
      cell(row, time);
      var link = document.createElement("a");
      link.href = "/incidents/" + encodeURIComponent(i.incident_id);
      link.textContent = i.summary || i.incident_id;
      cell(row, link);
      body.appendChild(row);
    });
    document.getElementById("incident-total").textContent = String(page.total);
    document.getElementById("no-incidents").hidden = page.items.length > 0;
  }

  function refreshList() {
    var q = new URLSearchParams();
    ["site", "camera", "state"].forEach(function (k) { if (w[k]) { q.set(k, w[k]); } });
    q.set("offset", w.offset); q.set("limit", w.limit);
    fetch("/api/incidents?" + q.toString()).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) { if (page) { drawList(page); } });
  }

  function showState(state) {
    var el = document.getElementById("incident-state");
    el.dataset.state = state;
    el.textContent = stateWord(state);
  }

  function drawDetail(detail) {
    var i = detail.incident;
    if (acted && i.state !== acted.state && Date.now() < acted.until) { return; } // an older view
    acted = null;
    showState(i.state);
    document.getElementById("incident-acked-by").textContent = i.acknowledged_by || "–";
    var followUp = document.getElementById("incident-follow-up");
    followUp.textContent = i.follow_up_at ? new Date(i.follow_up_at).toLocaleTimeString() : "–";
    if (i.follow_up_at) { followUp.setAttribute("datetime", i.follow_up_at); } else { followUp.removeAttribute("datetime"); }
    document.getElementById("incident-escalation").textContent = i.escalation_level >= 0 ? String(i.escalation_level) : "–";
    document.getElementById("incident-steps").textContent = i.steps_sent.join(", ") || "–";
    var body = document.querySelector("#incident-timeline tbody");
    body.textContent = "";
    i.timeline.forEach(function (e) {
      var row = document.createElement("tr"); row.dataset.kind = e.kind;
      var time = document.createElement("time"); time.setAttribute("datetime", e.at);
      time.textContent = new Date(e.at).toLocaleTimeString();
      cell(row, time); cell(row, e.kind); cell(row, e.actor); cell(row, e.detail);
      body.appendChild(row);
    });
  }

  function refreshDetail() {
    fetch("/api/incidents/" + encodeURIComponent(w.incident)).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (detail) { if (detail) { drawDetail(detail); } });
  }

  function act(button) {
    var out = document.getElementById("action-result");
    var text = document.getElementById("action-text");
    var eta = document.getElementById("action-eta");
    var sent = {text: text.value};
    if (button.dataset.action === "acknowledge" && eta.value) { sent.eta_minutes = parseInt(eta.value, 10); }
    out.textContent = "…"; out.className = "";
    fetch("/api/incidents/" + encodeURIComponent(w.incident) + "/actions/" + button.dataset.action, {
      method: "POST",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"},
      body: JSON.stringify(sent)
    }).then(function (r) {
      return r.json().then(function (body) { return [r.ok, body]; });
    }).then(function (answer) {
      var body = answer[1];
      if (answer[0]) {
        acted = {state: body.state, until: Date.now() + 10000};
        showState(body.state);
        out.textContent = w.done + " " + stateWord(body.state);
        out.dataset.outcome = "ok";
        text.value = ""; eta.value = "";
        refreshDetail();
      } else {
        out.textContent = w.failed + ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
        out.className = "error";
        out.dataset.outcome = "error";
      }
    }).catch(function (err) { out.textContent = w.failed + ": " + err; out.className = "error"; out.dataset.outcome = "error"; });
  }

  var buttons = document.querySelectorAll("#incident-actions button.action");
  for (var b = 0; b < buttons.length; b++) {
    buttons[b].addEventListener("click", function (e) { act(e.currentTarget); });
  }

  var onList = !!document.getElementById("incident-list");
  var connected = false;
  var source = new EventSource("/api/events");
  source.addEventListener("hello", function () {
    if (status) { status.textContent = status.dataset.live; }
    document.body.dataset.live = "yes";
    // A reconnect: what changed while the stream was down was never sent.
    if (connected) { if (onList) { refreshList(); } else { refreshDetail(); } }
    connected = true;
  });
  source.addEventListener("incidents", function () { if (onList) { refreshList(); } else { refreshDetail(); } });
  source.onerror = function () {
    if (status) { status.textContent = status.dataset.offline; }
    document.body.dataset.live = "no";
  };
})();
