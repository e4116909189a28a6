// Airlock dashboard: the only script. No framework and no build step.
// Every URL here is relative: the page's <base> is the session's address.
// 1. Elements with data-refresh="url" are re-fetched every data-every ms
//    (server-rendered, escaped HTML fragments) so the overview's counts
//    stay live. A session that ended sends the page to the login.
// 2. Elements with data-live="url" show what that event stream sends
//    (server-sent events, event "queue"): the approval queue changes the
//    moment a request is held or decided, with no polling.
// 3. Forms with data-confirm ask before they submit (deletes).
"use strict";

function refresh(el) {
  const url = el.dataset.refresh;
  const every = Number(el.dataset.every) || 3000;
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url, { credentials: "same-origin", redirect: "follow" });
      if (r.redirected || r.url.endsWith("/login")) {
        window.location.assign("/login");
        return;
      }
      if (r.ok) el.innerHTML = await r.text();
    } catch (_) {
      // The daemon restarted or the network blinked; try again next tick.
    } finally {
      busy = false;
    }
  }, every);
}

function live(el) {
  const source = new EventSource(el.dataset.live);
  source.addEventListener("queue", (event) => {
    el.innerHTML = event.data;
  });
  source.onerror = () => {
    // The browser retries a dropped stream by itself. CLOSED means the
    // retry got something else (the login page: the session ended), so
    // reload and let the server decide what to show.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(() => window.location.reload(), 2000);
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("input.copy").forEach((input) => {
    input.addEventListener("focus", () => input.select());
  });
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
