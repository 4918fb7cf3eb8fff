/*
 * "Check your email address" on the reset-request form: the address the
 * acknowledgment and the portal invitation will go to, shown back above the
 * button as it is typed (the costliest typo: both go nowhere).
 *
 * Without this script the server shows the box whenever the page comes
 * back with an address in it. textContent only: what is typed is never
 * read as markup. No inline script anywhere (strict CSP).
 */
(function () {
  "use strict";

  function init() {
    var input = document.getElementById("id_email");
    var box = document.getElementById("email-check");
    var address = document.getElementById("email-check-address");
    if (!input || !box || !address) {
      return;
    }

    function refresh() {
      var typed = input.value.trim();
      address.textContent = typed;
      box.hidden = typed === "";
    }

    input.addEventListener("input", refresh);
    // A value the browser restored (back button, autofill) counts too; one
    // the server refused is not shown back until it is changed.
    if (input.getAttribute("aria-invalid") !== "true") {
      refresh();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
