/* The live events page: new events arrive by Server-Sent Events (GET /console/live/stream)
   and are added at the top of the table. No library; the page works without this file
   (its Refresh link). Text is set with textContent only. */
(function () {
  "use strict";
  var table = document.getElementById("live-events");
  if (!table || !window.EventSource) {
    return;
  }
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var max = parseInt(table.getAttribute("data-max"), 10) || 50;

  function say(attribute, good) {
    if (status) {
      status.textContent = status.getAttribute(attribute);
      status.className = "status " + (good ? "status-valid" : "status-upcoming");
    }
  }

  function known(key) {
    var rows = body.rows;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-key") === key) {
        return true;
      }
    }
    return false;
  }

  var source = new EventSource(table.getAttribute("data-stream"));
  source.addEventListener("open", function () { say("data-on", true); });
  source.addEventListener("error", function () { say("data-off", false); });
  source.addEventListener("live", function (message) {
    var event = JSON.parse(message.data);
    if (known(event.key)) {
      return;
    }
    var empty = body.querySelector("tr.empty");
    if (empty) {
      body.removeChild(empty);
    }
    var row = document.createElement("tr");
    row.setAttribute("data-key", event.key);
    row.className = event.warn ? "warn fresh" : "fresh";
    [event.time, event.door, event.text].forEach(function (text, index) {
      var cell = document.createElement("td");
      if (index === 0) {
        cell.className = "nowrap";
      }
      cell.textContent = text;
      row.appendChild(cell);
    });
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > max) {
      body.deleteRow(body.rows.length - 1);
    }
  });
})();
