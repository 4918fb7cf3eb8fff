/*
 * The error summary's links (GOV.UK): following one moves the focus to the
 * input to fix, not only the view, and keeps its label or legend in sight.
 * Without this script the links still scroll to the input. No inline
 * script anywhere (strict CSP).
 */
(function () {
  "use strict";

  function init() {
    var summary = document.getElementById("error-summary");
    if (!summary) {
      return;
    }
    summary.addEventListener("click", function (event) {
      var link = event.target.closest ? event.target.closest("a[href^='#']") : null;
      var input = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!input || !/^(INPUT|SELECT|TEXTAREA)$/.test(input.tagName)) {
        return;
      }
      event.preventDefault();
      var fieldset = input.closest("fieldset");
      var legend = fieldset && fieldset.querySelector("legend");
      var label = document.querySelector("label[for='" + input.id + "']");
      // A date's or a radio group's question is its legend; any other
      // input's, its label.
      var heading = (input.type === "radio" || input.closest(".date-input")) && legend ? legend : label;
      input.focus({ preventScroll: true });
      (heading || input).scrollIntoView({ block: "start" });
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, "", "#" + input.id);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
