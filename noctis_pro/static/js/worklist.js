// Live worklist: listen on the same-origin WebSocket /ws/ (FastAPI relays Redis events; the session cookie
// authenticates it) and, on "study.updated", "report.signed" or "analysis.completed" (the AI badge), fetch that study's row as HTML from Django (with
// the page's filters: 204 means "not in this view any more") and swap it in.
// Event data is never turned into markup here: the row comes from a Django template, which escapes DICOM text.
(function () {
  "use strict";
  var table = document.querySelector("table.worklist");
  if (!table) { return; }
  var tbody = document.getElementById("worklist-rows");
  var status = document.getElementById("live-status");
  var rowUrl = table.getAttribute("data-row-url");
  var liveInsert = table.getAttribute("data-live-insert") === "true";
  var filterQuery = table.getAttribute("data-filter-query") || "";
  var LIVE_TYPES = { "study.updated": true, "report.signed": true, "analysis.completed": true };
  var delay = 1000;
  // A study analysed per series sends a burst of analysis.completed: one row fetch per study per burst.
  var COALESCE_MS = 200;
  var scheduled = Object.create(null);

  function setStatus(on) {
    if (!status) { return; }
    status.className = on ? "live on" : "live off";
    status.title = on ? "Live updates on" : "Live updates reconnecting";
  }

  function findRow(uid) {
    var rows = tbody.querySelectorAll("tr[data-study-uid]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-study-uid") === uid) { return rows[i]; }
    }
    return null;
  }

  // The status tabs' counts follow the rows this page sees change (a reload recounts everything).
  function countsMove(from, to) {
    if (from === to) { return; }
    [[from, -1], [to, 1], [from === null ? "all" : null, 1]].forEach(function (change) {
      if (!change[0]) { return; }
      var tab = document.querySelector('#status-counts a[data-status="' + change[0] + '"] .count');
      if (tab) { tab.textContent = String(Math.max(0, parseInt(tab.textContent, 10) + change[1])); }
    });
  }

  function refreshRow(uid) {
    var existing = findRow(uid);
    if (!existing && !liveInsert) { return; }  // filtered or paged view: new studies may not belong here
    var url = rowUrl.replace("STUDY_UID", encodeURIComponent(uid)) + (filterQuery ? "?" + filterQuery : "");
    fetch(url, {
      credentials: "same-origin", headers: { "Accept": "text/html" }
    }).then(function (response) {
      // 404: the study is gone (its instances moved to another study); 204: no longer matches the filters.
      if (response.status === 404 || response.status === 204) {
        var gone = findRow(uid);
        if (gone) { gone.remove(); }
        return null;
      }
      if (!response.ok) { throw new Error("row " + response.status); }
      return response.text();
    }).then(function (html) {
      if (html === null) { return; }
      var holder = document.createElement("tbody");
      holder.innerHTML = html;  // server-rendered, escaped by Django's templates
      var row = holder.querySelector("tr[data-study-uid]");
      if (!row) { return; }
      row.classList.add("updated");
      var current = findRow(uid);
      countsMove(current ? current.getAttribute("data-status") : null, row.getAttribute("data-status"));
      if (current) {
        current.replaceWith(row);
      } else {
        var empty = tbody.querySelector("tr.empty");
        if (empty) { empty.remove(); }
        tbody.insertBefore(row, tbody.firstChild);
      }
    }).catch(function (err) { console.warn("worklist: could not refresh", uid, err); });
  }

  function scheduleRefresh(uid) {
    if (scheduled[uid]) { return; }
    scheduled[uid] = window.setTimeout(function () { delete scheduled[uid]; refreshRow(uid); }, COALESCE_MS);
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/");
    socket.onopen = function () { delay = 1000; setStatus(true); };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event && LIVE_TYPES[event.type] === true && typeof event.study_instance_uid === "string") {
        scheduleRefresh(event.study_instance_uid);
      }
    };
    socket.onclose = function () {
      setStatus(false);
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  // A priority picked in a row is saved at once (the form posts and comes back to this page).
  tbody.addEventListener("change", function (e) {
    var select = e.target;
    if (select && select.classList && select.classList.contains("priority-select") && select.form) {
      select.form.submit();
    }
  });

  connect();
})();
