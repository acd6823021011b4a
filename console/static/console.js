// Live camera tiles: server-sent events from /api/events, no reload, no framework.
"use strict";
(function () {
  var words = document.getElementById("words");
  var status = document.getElementById("live-status");
  if (!words) { return; }
  var w = words.dataset;

  function word(level) { return w["level" + level.charAt(0).toUpperCase() + level.slice(1)] || level; }

  function ago(iso) {
    if (!iso) { return "–"; }
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 120) { return seconds + " s " + w.ago; }
    if (seconds < 7200) { return Math.round(seconds / 60) + " min " + w.ago; }
    return Math.round(seconds / 3600) + " h " + w.ago;
  }

  function text(tag, cls, value) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    if (value !== undefined) { el.textContent = value; }
    return el;
  }

  function newTile(id) {
    var tile = text("article", "tile");
    tile.id = "tile-" + id;
    tile.dataset.camera = id;
    tile.appendChild(text("h3", "", w.camera + " " + id));
    var level = text("p", "level");
    var icon = text("span", "icon"); icon.setAttribute("aria-hidden", "true");
    level.appendChild(icon); level.appendChild(text("span", "word"));
    tile.appendChild(level);
    var score = text("p", "score", w.score + ": "); score.appendChild(text("span", "value"));
    tile.appendChild(score);
    var age = text("p", "age", w.age + ": "); age.appendChild(text("time", "value"));
    tile.appendChild(age);
    tile.appendChild(text("p", "summary"));
    var img = text("img", "thumb"); img.alt = w.snapshot + " " + id; img.hidden = true;
    tile.appendChild(img);
    var badge = text("a", "badge"); badge.href = "/incidents?camera=" + encodeURIComponent(id);
    badge.appendChild(text("span", "n")); badge.appendChild(document.createTextNode(" " + w.open));
    badge.hidden = true;
    tile.appendChild(badge);
    var section = document.getElementById("new-cameras");
    section.hidden = false;
    section.querySelector(".grid").appendChild(tile);
    var count = document.getElementById("camera-count");
    count.textContent = String(Number(count.textContent) + 1);
    return tile;
  }

  function update(view) {
    var tile = document.getElementById("tile-" + view.camera_id) || newTile(view.camera_id);
    var a = view.latest;
    var level = a ? (a.risk_level || "failed") : "unknown";
    tile.dataset.level = level;
    tile.querySelector(".level .word").textContent = word(level);
    tile.querySelector(".score .value").textContent = a && a.risk_score !== null ? a.risk_score : "–";
    var time = tile.querySelector(".age .value");
    time.setAttribute("datetime", a ? a.assessed_at : "");
    time.textContent = ago(a ? a.assessed_at : "");
    tile.querySelector(".summary").textContent = a ? a.summary : "";
    var img = tile.querySelector(".thumb");
    if (a && a.has_snapshot) {
      img.src = "/api/cameras/" + encodeURIComponent(view.camera_id) + "/snapshot?v=" + encodeURIComponent(a.assessment_id);
      img.hidden = false;
    } else { img.hidden = true; img.removeAttribute("src"); }
    var badge = tile.querySelector(".badge");
    badge.querySelector(".n").textContent = view.open_incidents;
    badge.dataset.count = view.open_incidents;
    badge.hidden = !view.open_incidents;
    tile.dataset.assessment = a ? a.assessment_id : "";
  }

  function tick() {
    var times = document.querySelectorAll(".tile .age .value");
    for (var i = 0; i < times.length; i++) {
      var iso = times[i].getAttribute("datetime");
      if (iso) { times[i].textContent = ago(iso); }
    }
  }

  // After a reconnect (the stream ended: this browser fell behind, or the console restarted)
  // the changes in between were never sent: read every tile again.
  function reload(offset) {
    fetch("/api/cameras?limit=500&offset=" + offset).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) { return; }
        page.items.forEach(update);
        if (offset + page.items.length < page.total && page.items.length) { reload(offset + page.items.length); }
      });
  }

  var connected = false;
  var source = new EventSource("/api/events");
  source.addEventListener("hello", function () {
    status.textContent = status.dataset.live; document.body.dataset.live = "yes";
    if (connected) { reload(0); }
    connected = true;
  });
  source.addEventListener("tile", function (e) { update(JSON.parse(e.data)); });
  source.onerror = function () { status.textContent = status.dataset.offline; document.body.dataset.live = "no"; };
  tick();
  setInterval(tick, 1000);
})();
