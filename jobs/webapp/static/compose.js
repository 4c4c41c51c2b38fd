// The compose form's live counter: the server measures the text with the same code that bills
// it (GSM-7 or UCS-2, segments, smart quotes replaced), a moment after each keystroke.
(function () {
  "use strict";
  var body = document.getElementById("body");
  var zone = document.getElementById("zone");
  if (zone && !zone.getAttribute("data-fixed") && zone.value === "UTC" && window.Intl) {
    zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }
  if (!body) return;
  var timer = null;
  var asked = 0;

  function show(data) {
    document.getElementById("characters").textContent = data.characters;
    document.getElementById("encoding").textContent = data.encoding;
    document.getElementById("segments").textContent = data.segments;
    document.getElementById("fixed").hidden = !data.fixed;
    document.getElementById("counter").setAttribute("data-measured", body.value);
  }

  function measure() {
    var mine = ++asked;
    var url = body.getAttribute("data-measure") + "?body=" + encodeURIComponent(body.value);
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && mine === asked) show(data); })
      .catch(function () { /* typing again retries */ });
  }

  body.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(measure, 150);
  });
  measure();
})();
