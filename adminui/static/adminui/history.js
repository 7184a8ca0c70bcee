// Live history: new rows pushed over ws/history/ (same filters as the page) go on top of the table.
// While the live feed is away (Redis restarting, the server restarting), the table is reloaded every few
// seconds instead, and live updates resume when the socket connects again.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var tbody = document.getElementById("rows");
  var maxRows = 200;
  var retry = 1000;
  var reloading = null;

  function reload() {
    fetch(location.href, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.text() : Promise.reject(response.status);
    }).then(function (html) {
      var rows = new DOMParser().parseFromString(html, "text/html").getElementById("rows");
      if (rows) { tbody.innerHTML = rows.innerHTML; }
    }).catch(function () {});
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/history/" + location.search);
    socket.onopen = function () {
      retry = 1000;
      if (reloading) { clearInterval(reloading); reloading = null; reload(); }
      status.textContent = "Live: new requests appear as they finish.";
      status.dataset.connected = "yes";
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      var empty = tbody.querySelector("tr.empty");
      if (empty) { empty.remove(); }
      message.rows.forEach(function (html) {
        var holder = document.createElement("tbody");
        holder.innerHTML = html.trim();
        var row = holder.firstElementChild;
        row.classList.add("new");
        tbody.insertBefore(row, tbody.firstElementChild);
      });
      while (tbody.rows.length > maxRows) { tbody.deleteRow(-1); }
    };
    socket.onclose = function () {
      status.dataset.connected = "no";
      status.textContent = "Live updates paused: reloading every 5 s, reconnecting…";
      if (!reloading) { reloading = setInterval(reload, 5000); }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }
  connect();
})();
