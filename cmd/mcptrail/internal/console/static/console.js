// mcptrail console: the live tail of the calls page. The page works without
// it; with "Live tail" checked it re-reads /console/calls.json (the same
// filters) every two seconds and rebuilds the table from text nodes only.
"use strict";
(function () {
  const box = document.getElementById("live");
  const body = document.getElementById("calls-body");
  const status = document.getElementById("live-status");
  if (!box || !body) return;
  let timer = null;
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  };
  async function refresh() {
    try {
      const resp = await fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const data = await resp.json();
      if (!resp.ok) throw new Error(data.error || resp.statusText);
      const rows = [];
      for (const c of data.calls) {
        const tr = document.createElement("tr");
        cell(tr, c.time_text);
        const a = document.createElement("a");
        a.href = "/console/trace/" + encodeURIComponent(c.request_id);
        a.textContent = c.request_id;
        cell(tr, "").appendChild(a);
        cell(tr, c.principal || "—");
        cell(tr, c.method);
        cell(tr, c.target || "—");
        const badge = document.createElement("span");
        badge.className = "badge o-" + c.outcome;
        badge.textContent = c.outcome;
        cell(tr, "").appendChild(badge);
        cell(tr, c.duration_text, "num");
        cell(tr, (c.error_code ? c.error_code + " " : "") + (c.error_message || ""));
        rows.push(tr);
      }
      body.replaceChildren(...rows);
      status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC, " + rows.length + " calls";
    } catch (e) {
      status.textContent = "live tail paused: " + e.message;
    }
  }
  box.addEventListener("change", () => {
    clearInterval(timer);
    timer = null;
    status.textContent = "";
    if (box.checked) {
      refresh();
      timer = setInterval(refresh, 2000);
    }
  });
})();
