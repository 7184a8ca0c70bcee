// The detail page: "copy as curl". A file, not inline: the Content-Security-Policy allows only
// scripts from this server.
document.getElementById("copy-curl").addEventListener("click", function () {
  var text = document.getElementById("curl").textContent, button = this;
  function done() { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); }
  if (navigator.clipboard) { navigator.clipboard.writeText(text).then(done); return; }
  var area = document.createElement("textarea"); area.value = text; document.body.appendChild(area);
  area.select(); document.execCommand("copy"); area.remove(); done();
});
