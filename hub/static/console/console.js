/* LLM Hub console: the few behaviours plain HTML lacks. No framework, no network access. */
(function () {
  "use strict";

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function flash(button, text) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = text;
    window.setTimeout(function () { button.textContent = original; }, 2500);
  }

  // <button data-copy="element-id">: copy that element's text. The clipboard API needs a secure context
  // (HTTPS or localhost); elsewhere select the text and try the legacy command, or ask for Ctrl+C.
  function copy(button) {
    var target = document.getElementById(button.dataset.copy);
    if (!target) { return; }
    var text = target.textContent.trim();
    var fallback = function () {
      selectText(target);
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      flash(button, copied ? "Copied" : "Selected: press Ctrl+C");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { flash(button, "Copied"); }, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) { copy(button); }
  });

  // <form data-confirm="question">: ask before destructive actions (revoke, rotate).
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // The key forms: the model checkboxes only matter when "Only:" is chosen.
  function syncModelChoices(fieldset) {
    var selected = fieldset.querySelector('input[name="scope"][value="selected"]');
    var boxes = fieldset.querySelectorAll('input[name="models"]');
    boxes.forEach(function (box) { box.disabled = !(selected && selected.checked); });
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "scope") { syncModelChoices(event.target.closest("fieldset")); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("fieldset.models").forEach(syncModelChoices);
  });
  // The usage dashboard: while its range includes today, the server pushes the re-rendered body as
  // server-sent events whenever the figures change (hub/console/live.py). EventSource reconnects by itself.
  function followUsage(container) {
    var source = new EventSource(container.dataset.live);
    container.classList.add("is-live");
    source.addEventListener("usage", function (event) {
      // Parsed inert (DOMParser runs no script) and moved in node by node, never assigned as markup.
      var doc = new DOMParser().parseFromString(JSON.parse(event.data).html, "text/html");
      container.replaceChildren.apply(container, Array.prototype.slice.call(doc.body.childNodes));
      container.classList.add("is-live");
      container.classList.remove("is-stale");
    });
    source.addEventListener("error", function () { container.classList.add("is-stale"); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var container = document.querySelector("#usage-body[data-live]");
    if (container && window.EventSource) { followUsage(container); }
  });
  // The operator's overview: deployments' health badges follow /console/health.json every 10 s.
  function followHealth(note) {
    var refresh = function () {
      fetch(note.dataset.healthUrl, { credentials: "same-origin" }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (data) {
        if (!data) { return; }
        Object.keys(data.deployments).forEach(function (id) {
          var state = data.deployments[id];
          var badge = document.querySelector('[data-health="' + id + '"]');
          if (badge) {
            badge.className = "badge health " + state.state;
            badge.title = state.detail;
            badge.textContent = state.state + (state.latency_ms === null ? "" : " · " + state.latency_ms + " ms");
          }
          var load = document.querySelector('[data-load="' + id + '"]');
          if (load) { load.textContent = state.running === null ? "" : state.detail; }
        });
        note.textContent = "deployment health checked " + new Date(data.checked_at).toLocaleTimeString();
      }).catch(function () { note.textContent = "deployment health: the hub did not answer"; });
    };
    window.setInterval(refresh, 10000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var note = document.getElementById("health-note");
    if (note) { followHealth(note); }
  });
})();
