// The comparison page: each run's answer as it streams and, as each run ends, its figures; the best
// figure of each row (fastest first token, most tokens per second, shortest total) is marked.
(function () {
  "use strict";
  var root = document.getElementById("compare");
  var state = document.getElementById("compare-state");
  var sections = root.querySelectorAll("section.run:not(.original)");

  function ms(value) { return value === null || value === undefined ? "—" : Math.round(value) + " ms"; }
  function count(value) { return value === null || value === undefined ? "—" : String(value); }

  function mark(className, values, better) {
    var best = null;
    values.forEach(function (v) { if (v !== null && v !== undefined && (best === null || better(v, best))) { best = v; } });
    sections.forEach(function (section, i) {
      var cell = section.querySelector("dd." + className);
      cell.classList.toggle("best", best !== null && values[i] === best && values.length > 1);
    });
  }

  function show(data) {
    data.runs.forEach(function (run, i) {
      var section = sections[i];
      var running = run.outcome === "running";
      section.dataset.state = running ? "running" : (run.outcome === "ok" ? "done" : "failed");
      section.querySelector(".status").textContent = running ? "running" : run.status + (run.outcome === "ok" ? "" : " " + run.outcome + (run.error ? ": " + run.error : ""));
      section.querySelector(".ttft").textContent = ms(run.ttft_ms);
      section.querySelector(".tps").textContent = run.tokens_per_second ? run.tokens_per_second.toFixed(1) : "—";
      section.querySelector(".tokens").textContent = count(run.prompt_tokens) + " prompt · " + count(run.completion_tokens) + " completion";
      section.querySelector(".total").textContent = running ? "—" : ms(run.duration_ms);
      var calls = (run.tool_calls || []).map(function (c) { return (c.function || {}).name + "(" + JSON.stringify((c.function || {}).arguments) + ")"; });
      section.querySelector(".answer").textContent = run.answer + (calls.length ? "\n[tool calls] " + calls.join(", ") : "");
      if (run.request_id && !running) {
        var cell = section.querySelector(".request-id");
        if (!cell.querySelector("a")) {
          var link = document.createElement("a");
          link.href = root.dataset.detailUrl.replace("REQUEST_ID", run.request_id);
          link.textContent = run.request_id;
          cell.textContent = "";
          cell.appendChild(link);
        }
      }
    });
    if (data.done) {
      mark("ttft", data.runs.map(function (r) { return r.ttft_ms; }), function (a, b) { return a < b; });
      mark("tps", data.runs.map(function (r) { return r.tokens_per_second; }), function (a, b) { return a > b; });
      mark("total", data.runs.map(function (r) { return r.duration_ms; }), function (a, b) { return a < b; });
    }
    state.textContent = data.done ? "Done: the best figure of each row is marked." : "Running…";
    state.dataset.done = data.done ? "yes" : "no";
  }

  function poll() {
    fetch(root.dataset.statusUrl, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.json() : Promise.reject(response.status);
    }).then(function (data) {
      show(data);
      if (!data.done) { setTimeout(poll, 250); }
    }).catch(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
