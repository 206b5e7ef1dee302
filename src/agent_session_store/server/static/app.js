// The inspector's only script: live timeline (SSE), tool-call pairing across live rows,
// rewinds applied live, and the "new sessions" notice. No build step, no dependencies.
// Rows come from the server as escaped HTML; nothing here builds HTML from event data.
(function () {
  "use strict";

  function pairAll(tl) {
    const byId = new Map();
    for (const li of tl.querySelectorAll("li[data-tool-call-id]")) {
      const id = li.dataset.toolCallId;
      const entry = byId.get(id) || {};
      if (li.classList.contains("kind-tool_call") && !entry.call) entry.call = li;
      if (li.classList.contains("kind-tool_result") && !entry.result) entry.result = li;
      byId.set(id, entry);
    }
    for (const { call, result } of byId.values()) {
      if (!call || !result) continue;
      link(call.querySelector("a.result-link.pending"), result, "result #" + result.dataset.seq + " ↓");
      link(result.querySelector("a.call-link.pending"), call, "call #" + call.dataset.seq + " ↑");
      const note = call.querySelector(".pending-note");
      if (note) note.remove();
    }
  }

  function link(anchor, target, text) {
    if (!anchor) return;
    anchor.href = "#" + target.id;
    anchor.textContent = text;
    anchor.hidden = false;
    anchor.classList.remove("pending");
  }

  function applyRewind(tl, li) {
    const to = Number(li.dataset.toSequence);
    const at = Number(li.dataset.seq);
    if (!Number.isFinite(to)) return;
    for (const row of tl.children) {
      const seq = Number(row.dataset.seq);
      if (seq > to && seq < at && !row.classList.contains("rewound")) {
        row.classList.add("rewound");
        const flag = document.createElement("span");
        flag.className = "flag rewound-flag";
        flag.textContent = "rewound";
        const meta = row.querySelector(".meta");
        if (meta) meta.appendChild(flag);
      }
    }
  }

  function live(tl) {
    let last = Number(tl.dataset.lastSeq || 0);
    let busy = false;
    let again = false;
    const status = document.getElementById("live-status");
    const say = (text) => { if (status) status.textContent = text; };
    const source = new EventSource(tl.dataset.stream);
    source.onopen = () => say("live");
    source.onerror = () => say("reconnecting…");
    source.onmessage = (message) => {
      if (Number(message.lastEventId) > last) schedule();
    };
    source.addEventListener("error", (message) => {
      if (message.data) say("stream error: " + JSON.parse(message.data).code);
    });

    function schedule() {
      if (busy) { again = true; return; }
      busy = true;
      setTimeout(fetchRows, 25);
    }

    async function fetchRows() {
      try {
        const response = await fetch(tl.dataset.fragment + "?after=" + last, { credentials: "same-origin" });
        if (!response.ok) { say("could not load new events (" + response.status + ")"); return; }
        const html = await response.text();
        const doc = new DOMParser().parseFromString("<ol>" + html + "</ol>", "text/html");
        const list = doc.querySelector("ol");
        for (const li of Array.from(list ? list.children : [])) {
          if (li.id && document.getElementById(li.id)) continue;
          const row = document.adoptNode(li);
          tl.appendChild(row);
          if (row.dataset.type === "history_rewound") applyRewind(tl, row);
        }
        const newest = Number(response.headers.get("x-last-sequence"));
        if (newest > last) last = newest;
        tl.dataset.lastSeq = String(last);
        pairAll(tl);
      } catch (err) {
        say("could not load new events");
      } finally {
        busy = false;
        if (again) { again = false; schedule(); }
      }
    }
  }

  function pollNew(notice) {
    const count = notice.querySelector(".count");
    async function tick() {
      try {
        const response = await fetch(notice.dataset.poll, { credentials: "same-origin" });
        if (response.ok) {
          const page = await response.json();
          const n = page.items.length;
          if (n > 0) {
            count.textContent = n >= 100 ? "100+" : String(n);
            notice.hidden = false;
          }
        }
      } catch (err) { /* try again next tick */ }
      setTimeout(tick, 3000);
    }
    setTimeout(tick, 3000);
  }

  // Payloads arrive as compact JSON; indent one when its row is opened (text only).
  document.addEventListener("toggle", (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open) return;
    const pre = details.querySelector("pre.json:not(.pretty)");
    if (!pre) return;
    try { pre.textContent = JSON.stringify(JSON.parse(pre.textContent), null, 2); } catch (err) { /* leave as is */ }
    pre.classList.add("pretty");
  }, true);

  const timeline = document.getElementById("timeline");
  if (timeline) {
    pairAll(timeline);
    if (timeline.dataset.stream) live(timeline);
  }
  const notice = document.getElementById("new-sessions");
  if (notice && notice.dataset.poll) pollNew(notice);
})();
