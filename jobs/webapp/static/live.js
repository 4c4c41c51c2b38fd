// Keeps a page's numbers current without reloading it: every few seconds it asks the JSON
// twin of the page and writes the answers as text (never as HTML).
(function () {
  "use strict";
  var INTERVAL_MS = 3000;

  function cell(row, key, link) {
    var td = document.createElement("td");
    td.setAttribute("data-field", key);
    if (key === "campaign" && link) {
      var a = document.createElement("a");
      a.href = link + encodeURIComponent(row[key]);
      a.textContent = row[key];
      td.appendChild(a);
    } else {
      td.textContent = row[key] === undefined ? "" : row[key];
    }
    return td;
  }

  function renderRows(table, rows) {
    var keys = Array.prototype.map.call(table.querySelectorAll("th[data-col]"), function (th) {
      return th.getAttribute("data-col");
    });
    var body = document.createElement("tbody");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-campaign", row.campaign);
      keys.forEach(function (key) { tr.appendChild(cell(row, key, table.getAttribute("data-link"))); });
      body.appendChild(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
  }

  function renderFields(root, fields) {
    Object.keys(fields).forEach(function (name) {
      root.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
        el.textContent = fields[name];
      });
    });
  }

  function renderTables(tables) {
    Object.keys(tables).forEach(function (id) {
      var table = document.getElementById(id);
      if (!table || !table.tBodies.length) return;
      var body = document.createElement("tbody");
      tables[id].forEach(function (cells) {
        var tr = document.createElement("tr");
        cells.forEach(function (text) {
          var td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      table.replaceChild(body, table.tBodies[0]);
    });
  }

  function poll(el) {
    fetch(el.getAttribute("data-poll"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        if (data.rows && el.tBodies && data.rows.length) renderRows(el, data.rows);
        if (data.fields) renderFields(document, data.fields);
        if (data.tables) renderTables(data.tables);
        var stamp = document.getElementById("as-of");
        if (stamp && data.as_of) stamp.textContent = "As of " + data.as_of.slice(0, 19) + " UTC.";
        document.body.setAttribute("data-polled", String(Date.now()));
      })
      .catch(function () { /* the next poll tries again */ });
  }

  document.querySelectorAll("[data-poll]").forEach(function (el) {
    poll(el);
    setInterval(function () { poll(el); }, INTERVAL_MS);
  });
})();
