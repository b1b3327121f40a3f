// mpesa-gateway pay page: the only script, same origin, optional. Without it the status page
// refreshes itself (<noscript> meta refresh) and everything works the same.
(function () {
  "use strict";
  var watched = document.querySelector("[data-status-url]");
  if (watched) {
    var url = watched.getAttribute("data-status-url");
    var shown = watched.getAttribute("data-state");
    var poll = function () {
      fetch(url, { cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          if (j.state !== shown) { window.location.reload(); } else { window.setTimeout(poll, 1500); }
        })
        .catch(function () { window.setTimeout(poll, 4000); });
    };
    window.setTimeout(poll, 1500);
  }
  var print = document.getElementById("print");
  if (print) {
    print.hidden = false;
    print.addEventListener("click", function () { window.print(); });
  }
})();
