// Keeps a dashboard page live without reloading it: every few seconds it asks the page's JSON
// endpoint (data-poll on <body>) for fresh numbers and swaps in the sections the server
// rendered from them (one set of templates, so the page never formats a number itself).
// On the login page it checks whether this browser already holds a valid key cookie (a link
// followed from another site arrives without its SameSite=Strict cookie) and moves on if so.
(function () {
  "use strict";

  function openDetails(element) {
    return Array.from(element.querySelectorAll("details[open][data-key]"), function (d) {
      return d.dataset.key;
    });
  }

  function reopen(element, keys) {
    element.querySelectorAll("details[data-key]").forEach(function (d) {
      d.open = keys.indexOf(d.dataset.key) !== -1;
    });
  }

  function swap(sections, seen) {
    Object.keys(sections).forEach(function (name) {
      var html = sections[name];
      var element = document.querySelector('[data-section="' + name + '"]');
      if (!element || seen[name] === html) {
        return;
      }
      var keep = openDetails(element);
      element.innerHTML = html;
      reopen(element, keep);
      seen[name] = html;
    });
  }

  function say(text, stale) {
    var status = document.getElementById("live-status");
    if (status) {
      status.textContent = text;
      status.classList.toggle("stale", Boolean(stale));
    }
  }

  function poll(body) {
    var url = body.dataset.poll;
    var every = Number(body.dataset.every) || 3000;
    var seen = {};
    var refreshes = 0;

    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
                   cache: "no-store" })
        .then(function (response) {
          if (response.status === 401 || response.status === 403) {
            window.location.assign(body.dataset.login + "?next=" +
                                   encodeURIComponent(window.location.pathname));
            return null;
          }
          return response.json().then(function (data) {
            if (!response.ok) {
              say("not refreshed: " + (data.detail || response.status), true);
              return;
            }
            swap(data.html || {}, seen);
            refreshes += 1;
            body.dataset.refreshes = String(refreshes);
            say("live: updated " + new Date().toLocaleTimeString(), false);
          });
        })
        .catch(function () {
          say("connection lost: retrying", true);
        })
        .then(function () {
          window.setTimeout(tick, every);
        });
    }

    window.setTimeout(tick, every);
  }

  function resumeSession(form) {
    fetch(form.dataset.session, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.ok) {
          window.location.replace(form.elements.next.value);
        }
      })
      .catch(function () { /* stay on the form */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.poll) {
      poll(document.body);
    }
    var form = document.getElementById("login-form");
    if (form && !document.getElementById("login-error")) {
      resumeSession(form);
    }
  });
})();
