// The relay console's few behaviours. Everything here writes text (textContent), never markup.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(el.dateTime);
    if (!Number.isNaN(moment.getTime())) {
      el.textContent = moment.toLocaleString();
    }
  }
}

function copyButtons() {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const icon = button.firstElementChild;
    if (!icon) return;  // still showing the last copy's word
    const say = (text) => {
      button.replaceChildren(document.createTextNode(text));
      setTimeout(() => button.replaceChildren(icon), 1500);
    };
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      say("copied");
    } catch {
      // Without a secure context there is no clipboard: select the id for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(button.previousElementSibling);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      say("Ctrl+C");
    }
  });
}

function refreshWhilePending() {
  const marker = document.querySelector("[data-refresh]");
  if (marker) {
    setTimeout(() => location.reload(), Number(marker.dataset.refresh) * 1000);
  }
}

function followJobs() {
  for (const bar of document.querySelectorAll("progress[data-job]")) {
    const id = bar.dataset.job;
    const label = document.querySelector(`[data-job-status="${id}"]`);
    const poll = async () => {
      const answer = await fetch(`/console/jobs/${encodeURIComponent(id)}/progress`, {
        headers: { Accept: "application/json" },
      });
      if (!answer.ok) return;
      const job = await answer.json();
      const percent = job.total ? Math.min(100, Math.floor((100 * job.done) / job.total))
        : (job.finished ? 100 : 0);
      bar.value = percent;
      bar.dataset.percent = String(percent);
      if (label) {
        label.textContent = `${job.status}: ${job.done} of ${job.total ?? "?"} (${percent} %)`
          + (job.error ? ` – ${job.error}` : "");
      }
      if (!job.finished) setTimeout(poll, 1000);
    };
    poll();
  }
}

function checkFilters() {
  for (const box of document.querySelectorAll("textarea[data-filter-check]")) {
    const out = document.getElementById(box.getAttribute("aria-describedby"));
    let timer;
    box.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const answer = await fetch(`/console/filters/check?text=${encodeURIComponent(box.value)}`);
        if (!answer.ok) return;
        const verdict = await answer.json();
        out.textContent = verdict.message;
        out.className = verdict.ok ? "ok" : "error";
        box.setAttribute("aria-invalid", verdict.ok ? "false" : "true");
      }, 300);
    });
  }
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function followLive() {
  const table = document.getElementById("live");
  if (!table) return;
  const status = document.getElementById("live-status");
  const body = table.tBodies[0];
  const source = new EventSource(table.dataset.stream);
  const add = (when, what, type, detail, outcome) => {
    const row = body.insertRow(0);
    const time = document.createElement("time");
    time.dateTime = when;
    time.title = when;
    time.textContent = new Date(when).toLocaleTimeString();
    row.insertCell().append(time);
    const label = document.createElement("span");
    label.textContent = what;
    if (outcome) label.className = `badge status-${outcome}`;
    row.insertCell().append(label);
    cell(row, type);
    cell(row, detail, "sub");
    while (body.rows.length > 200) body.deleteRow(-1);
  };
  source.addEventListener("open", () => { status.textContent = "Following: new items appear at the top."; });
  source.addEventListener("error", () => { status.textContent = "Connection lost: reconnecting…"; });
  source.addEventListener("signed-out", () => { source.close(); location.assign("/console/login"); });
  source.addEventListener("event", (message) => {
    const e = JSON.parse(message.data);
    add(e.received_at, "event", e.type, `${e.id} from ${e.source} (${e.vendor}), ${e.subject_kind} ${e.subject_id ?? ""}`);
  });
  source.addEventListener("attempt", (message) => {
    const a = JSON.parse(message.data);
    const answer = a.response_status ? `HTTP ${a.response_status}` : (a.error_class ?? "no answer");
    add(a.started_at, a.outcome, a.event_type,
      `${a.delivery_id} #${a.attempt_number} to ${a.subscription_id}: ${answer} in ${a.duration_ms} ms`, a.outcome);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  copyButtons();
  refreshWhilePending();
  followJobs();
  checkFilters();
  followLive();
});
