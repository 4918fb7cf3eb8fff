// Keyboard shortcuts of a request's page: each element with a
// data-shortcut="<key>" is reached by pressing that key (shown beside it in
// a <kbd>), unless the staff member is typing in a field. A box named by
// data-target is ticked or unticked; a link or button is followed or
// pressed. Single-key shortcuts can be turned off (WCAG 2.1.4) with the
// page's "Single-key shortcuts" box; the choice is kept in this browser.
// Without JavaScript every action is a plain link or button.
(function () {
  "use strict";
  var STORED = "portal-reset.shortcuts";
  var toggle = document.getElementById("rr-shortcuts-on");
  function enabled() {
    try {
      return window.localStorage.getItem(STORED) !== "off";
    } catch (error) {
      return true;
    }
  }
  if (toggle) {
    toggle.hidden = false;
    toggle.parentElement.hidden = false;
    toggle.checked = enabled();
    document.documentElement.classList.toggle("rr-shortcuts-off", !toggle.checked);
    toggle.addEventListener("change", function () {
      try {
        window.localStorage.setItem(STORED, toggle.checked ? "on" : "off");
      } catch (error) {
        // Storage refused: the choice lasts for this page only.
      }
      document.documentElement.classList.toggle("rr-shortcuts-off", !toggle.checked);
    });
  }
  function typing(element) {
    return element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName) &&
      !/^(checkbox|radio|button|submit)$/.test(element.type || ""));
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat || typing(document.activeElement)) {
      return;
    }
    if (toggle ? !toggle.checked : !enabled()) {
      return;
    }
    var key = event.key.toLowerCase();
    var found = document.querySelector('[data-shortcut="' + key.replace(/["\\]/g, "") + '"]');
    if (!found) {
      return;
    }
    event.preventDefault();
    var target = found.dataset.target ? document.getElementById(found.dataset.target) : found;
    if (!target) {
      return;
    }
    target.focus();
    target.click();
  });
})();
