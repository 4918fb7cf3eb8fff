// Keyboard shortcuts of a request's page: each element with a
// data-shortcut="<key>" is reached by pressing that key (shown beside it in
// a <kbd>), unless the staff member is typing in a field. A box named by
// data-target is ticked or unticked; a link or button is followed or
// pressed. Without JavaScript every action is a plain link or button.
(function () {
  "use strict";
  function typing(element) {
    return element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName) &&
      !/^(checkbox|radio|button|submit)$/.test(element.type || ""));
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat || typing(document.activeElement)) {
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
