// Nodes page: the C-ECHO buttons answer inline (JSON from nodes:echo) instead of reloading the page.
"use strict";
document.querySelectorAll("form.echo-form").forEach((form) => {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = form.querySelector(".echo-result");
    const button = form.querySelector("button");
    out.textContent = "…";
    out.className = "echo-result muted";
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const result = await response.json();
      out.textContent = result.ok ? `OK, ${Math.round(result.elapsed_ms)} ms` : result.message; // textContent: never HTML
      out.className = "echo-result " + (result.ok ? "status-done" : "error");
    } catch (error) {
      out.textContent = `echo failed: ${error.message}`;
      out.className = "echo-result error";
    } finally {
      button.disabled = false;
    }
  });
});
