// The support banner's countdown: minutes and seconds left in the support session.
// The server ends the session when it expires whatever this shows; this only keeps the banner honest.
(function () {
  "use strict";
  function format(seconds) {
    if (seconds <= 0) return "no time: reload to leave";
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + " min " + (rest < 10 ? "0" : "") + rest + " s";
  }
  function start() {
    var clocks = document.querySelectorAll(".support-countdown[data-expires]");
    if (!clocks.length) return;
    function tick() {
      var now = Math.floor(Date.now() / 1000);
      clocks.forEach(function (clock) {
        clock.textContent = format(parseInt(clock.getAttribute("data-expires"), 10) - now);
      });
    }
    tick();
    setInterval(tick, 1000);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
