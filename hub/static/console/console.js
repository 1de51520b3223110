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
})();
