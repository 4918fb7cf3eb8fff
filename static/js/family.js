/*
 * Family members on the reset-request form.
 *
 * "Does anyone else use this login?": the rows show only after "Yes". The
 * server renders them hidden until then; site.css shows them without script
 * where the browser has :has(); here it is done for every browser, with the
 * hidden attribute.
 *
 * "Add another family member" copies <template id="family-empty-form">
 * (Django's formset empty_form) as the next row, up to 5, and keeps
 * family-TOTAL_FORMS in step.
 *
 * The page works without this script: the server renders one blank row and
 * the button stays hidden. Blank rows are ignored by the formset, so there is
 * nothing to remove. No inline script or handler anywhere (strict CSP).
 */
(function () {
  "use strict";

  var PREFIX = "family";
  var HARD_MAX = 5;

  function initQuestion() {
    var section = document.getElementById("family-section");
    var yes = document.querySelector("input[name='others_use_login'][value='yes']");
    var no = document.querySelector("input[name='others_use_login'][value='no']");
    if (!section || !yes || !no) {
      return;
    }
    // Shown by the server after a POST whose rows had something to say.
    var open = !section.hidden;

    function refresh() {
      section.hidden = no.checked || (!yes.checked && !open);
    }

    yes.addEventListener("change", refresh);
    no.addEventListener("change", refresh);
    refresh();
  }

  function initRows() {
    var template = document.getElementById("family-empty-form");
    var rows = document.getElementById("family-forms");
    var button = document.getElementById("family-add");
    var total = document.getElementById("id_" + PREFIX + "-TOTAL_FORMS");
    var maxField = document.getElementById("id_" + PREFIX + "-MAX_NUM_FORMS");
    var status = document.getElementById("family-status");
    if (!template || !rows || !button || !total || !("content" in template)) {
      return;
    }
    var max = Math.min(HARD_MAX, parseInt(maxField && maxField.value, 10) || HARD_MAX);

    function count() {
      return parseInt(total.value, 10) || 0;
    }

    function refresh() {
      button.hidden = count() >= max;
    }

    button.addEventListener("click", function () {
      var index = count();
      if (index >= max) {
        return;
      }
      // The template is our own server-rendered markup with no user data.
      var html = template.innerHTML
        .replace(/__prefix__/g, String(index))
        .replace(/__num__/g, String(index + 1));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var row = holder.querySelector("fieldset");
      if (!row) {
        return;
      }
      rows.appendChild(row);
      total.value = String(index + 1);
      refresh();

      if (status && status.dataset.added) {
        status.textContent = status.dataset.added.replace(/__num__/g, String(index + 1));
      }
      var first = row.querySelector("input, select, textarea");
      if (first) {
        first.focus();
      }
    });

    refresh();
  }

  function init() {
    initQuestion();
    initRows();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
