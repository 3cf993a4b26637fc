// modelops console: keep the page live without reloading it. No library; the page works without
// this file too (it is rendered on the server), it only stops updating by itself.
"use strict";
(function () {
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var updated = document.getElementById("updated");
  if (!main || !window.EventSource || main.dataset.live !== "1") {
    if (live) live.textContent = "Live updates: off (reload to refresh)";
    return;
  }
  var lastUpdate = null;
  function say(text) { if (live && live.textContent !== text) live.textContent = text; }

  // Something that identifies the focused element across a re-render, to give focus back to it.
  function focusKey(el) {
    if (!el || el === document.body || !main.contains(el)) return null;
    if (el.id) return { id: el.id };
    if (el.getAttribute("href")) return { href: el.getAttribute("href"), text: el.textContent };
    if (el.getAttribute("aria-label")) return { label: el.getAttribute("aria-label") };
    return null;
  }
  function refocus(key) {
    if (!key) return;
    var found = null;
    if (key.id) found = document.getElementById(key.id);
    else if (key.href) {
      var links = main.querySelectorAll("a[href]");
      for (var i = 0; i < links.length; i++) {
        if (links[i].getAttribute("href") === key.href && links[i].textContent === key.text) { found = links[i]; break; }
      }
    } else if (key.label) {
      found = main.querySelector('[aria-label="' + key.label.replace(/"/g, '\\"') + '"]');
    }
    if (found) found.focus({ preventScroll: true });
  }

  function connect() {
    var url = "/stream?path=" + encodeURIComponent(location.pathname + location.search) +
      "&since=" + encodeURIComponent(main.dataset.digest || "");
    var source = new EventSource(url);
    source.addEventListener("open", function () { say("Live updates: on"); });
    source.addEventListener("main", function (ev) {
      var data = JSON.parse(ev.data);
      var key = focusKey(document.activeElement);
      // Keep what the reader opened or scrolled: <details> state and the log's scroll position.
      var open = Array.prototype.map.call(main.querySelectorAll("details[open]"), function (d) { return d.id; });
      var log = main.querySelector("pre.log");
      var atBottom = !log || log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      main.innerHTML = data.html;
      main.dataset.digest = data.digest;
      open.forEach(function (id) { var d = id && document.getElementById(id); if (d) d.open = true; });
      var newLog = main.querySelector("pre.log");
      if (newLog && atBottom) newLog.scrollTop = newLog.scrollHeight;
      document.title = data.title + " · modelops console";
      refocus(key);
      lastUpdate = new Date();
      // The time is shown, not announced: a screen reader hears only when the state changes.
      if (updated) updated.textContent = "(updated " + lastUpdate.toLocaleTimeString() + ")";
      say("Live updates: on");
    });
    source.addEventListener("status", function (ev) {
      var data = JSON.parse(ev.data);
      say(data.ok ? data.text : "Live updates: " + data.text);
    });
    source.addEventListener("moved", function (ev) { location.replace(JSON.parse(ev.data).location); });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself (after the retry the server sent).
      say("Live updates: reconnecting…" + (lastUpdate ? " (last update " + lastUpdate.toLocaleTimeString() + ")" : ""));
    });
  }
  var log = main.querySelector("pre.log");
  if (log) log.scrollTop = log.scrollHeight;
  connect();
})();
