/* The derive site's own script (no dependency, nothing fetched).
 *
 * A display formula wider than its column scrolls sideways (derive.css);
 * this marks it so that the reader sees it does: data-overflow="start",
 * "middle" or "end" says which edges hide more of it, and the stylesheet
 * draws a shadow on those edges and a ↔ cue under the formula. An
 * overflowing formula also takes the keyboard focus, so that arrow keys
 * scroll it.
 */
(function () {
  "use strict";

  function mark(el) {
    var hidden = el.scrollWidth - el.clientWidth;
    if (hidden <= 1) {
      el.removeAttribute("data-overflow");
      el.removeAttribute("tabindex");
      return;
    }
    var left = el.scrollLeft;
    el.setAttribute("data-overflow", left <= 1 ? "start" : left >= hidden - 1 ? "end" : "middle");
    el.setAttribute("tabindex", "0");
  }

  function markAll() {
    document.querySelectorAll(".derive-math").forEach(mark);
  }

  function setup() {
    document.querySelectorAll(".derive-math").forEach(function (el) {
      el.addEventListener("scroll", function () { mark(el); }, { passive: true });
    });
    markAll();
    window.addEventListener("resize", markAll);
    /* a formula in a closed tab or details block has no width until shown */
    document.addEventListener("click", function () { window.setTimeout(markAll, 0); });
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(markAll);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
