// Report editor: autosaves the draft (debounced POST as JSON) and applies a template to empty fields.
(function () {
  "use strict";
  const form = document.getElementById("report-form");
  if (!form) return;
  const url = form.dataset.autosaveUrl;
  const state = document.getElementById("autosave-state");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const findings = document.getElementById("findings");
  const impression = document.getElementById("impression");
  const DELAY_MS = 800;
  let timer = null;
  let inFlight = null;
  let lastSent = JSON.stringify({ findings: findings.value, impression: impression.value });

  async function save() {
    timer = null;
    const body = JSON.stringify({ findings: findings.value, impression: impression.value });
    if (body === lastSent) return;
    if (inFlight) await inFlight.catch(() => {});
    state.textContent = "Saving…";
    inFlight = fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body,
    });
    try {
      const response = await inFlight;
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        state.textContent = "Not saved: " + (data.error || response.status);
        return;
      }
      lastSent = body;
      state.textContent = "Draft saved " + new Date(data.saved_at).toLocaleTimeString();
      state.dataset.saved = data.saved_at;
    } catch (err) {
      state.textContent = "Not saved (offline?) — will retry";
      timer = setTimeout(save, DELAY_MS * 4);
    } finally {
      inFlight = null;
    }
  }

  function schedule() {
    if (timer) clearTimeout(timer);
    state.textContent = "Editing…";
    timer = setTimeout(save, DELAY_MS);
  }

  findings.addEventListener("input", schedule);
  impression.addEventListener("input", schedule);
  form.addEventListener("submit", () => { if (timer) clearTimeout(timer); });

  const picker = document.getElementById("report-template");
  if (picker) {
    picker.addEventListener("change", () => {
      const option = picker.selectedOptions[0];
      if (!option || !option.value) return;
      if (findings.value.trim() && !window.confirm("Replace the text with the template?")) return;
      findings.value = option.dataset.findings || "";
      impression.value = option.dataset.impression || "";
      schedule();
    });
  }
})();
