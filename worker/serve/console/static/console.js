// The console's only script: show every <time datetime="..."> in the browser's own time zone (the
// page carries UTC, which stays in the title for whoever compares with logs). Without it, UTC shows.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short"
  });
  function localise() {
    var nodes = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i], when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime()) || node.dataset.local) { continue; }
      node.title = node.textContent + " (UTC)";
      node.textContent = format.format(when);
      node.dataset.local = "1";
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", localise); } else { localise(); }
})();
