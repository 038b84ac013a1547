// Transfers page: rows follow `transfer.updated` events from the same-origin WebSocket /ws/ (published by
// noctis_pro.pacs.transfers as a send, forward or retrieve moves on). A transfer the page does not list yet
// reloads the page. Without the socket, an active page reloads every 3 s instead. Everything is set with
// textContent: node names, UIDs and errors are never markup.
"use strict";
(function () {
  const table = document.querySelector("table.transfers");
  if (!table) return;
  let reloadTimer = null;
  const reloadSoon = (ms) => {
    if (reloadTimer === null) reloadTimer = setTimeout(() => window.location.reload(), ms);
  };
  const pollIfActive = () => {
    if (table.dataset.active === "true") reloadSoon(3000);
  };

  function render(row, event) {
    row.dataset.status = event.status;
    const status = row.querySelector("td.t-status");
    status.textContent = event.status;
    status.className = "t-status status-" + event.status;
    const cell = row.querySelector("td.t-progress");
    cell.textContent = "";
    if (event.total) {
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = Math.min(100, Math.round((100 * (event.completed + event.failed)) / event.total));
      cell.append(bar, " ");
    }
    cell.append(String(event.completed) + (event.total !== null ? "/" + event.total : ""));
    if (event.failed) {
      const failed = document.createElement("span");
      failed.className = "error";
      failed.textContent = event.failed + " failed";
      cell.append(" · ", failed);
    }
    const error = row.querySelector("td.t-error");
    error.textContent = "";
    if (event.error) {
      const text = document.createElement("span");
      text.className = event.status === "failed" ? "error" : "warn";
      text.textContent = event.error.length > 200 ? event.error.slice(0, 199) + "…" : event.error;
      error.append(text);
    }
  }

  let socket;
  try {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/ws/");
  } catch (e) {
    pollIfActive();
    return;
  }
  socket.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    if (!event || event.type !== "transfer.updated") return;
    const row = table.querySelector('tr[data-transfer="' + Number(event.transfer_id) + '"]');
    if (!row) {
      reloadSoon(500);
      return;
    }
    render(row, event);
  };
  socket.onclose = pollIfActive;
})();
