"""A self-contained HTML view of an AsyncAPI document: no CDN, no fetch, works offline.

The document is embedded in the page (``<script type="application/json">``, with ``<`` escaped
so it cannot close the tag) and a few lines of inline JavaScript render servers, operations and
messages with their payload schemas. It is a reader, not a full AsyncAPI studio.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["asyncapi_html"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>%(title)s - AsyncAPI</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}
.op{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.send{border-left:6px solid #2a7}.receive{border-left:6px solid #27c}
.tag{font:bold 12px monospace;text-transform:uppercase;margin-right:.6em}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
code{background:#f0f0f0;padding:0 .3em}
</style></head><body>
<h1 id="title"></h1><p><a href="asyncapi.json">asyncapi.json</a></p>
<h2>Servers</h2><ul id="servers"></ul>
<h2>Operations</h2><div id="operations"></div>
<h2>Schemas</h2><div id="schemas"></div>
<script type="application/json" id="asyncapi">%(document)s</script>
<script>
(function () {
  var doc = JSON.parse(document.getElementById("asyncapi").textContent);
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function resolve(ref) {
    return ref.replace(/^#\\//, "").split("/").reduce(function (o, k) {
      return o && o[k.replace(/~1/g, "/").replace(/~0/g, "~")];
    }, doc);
  }
  function deref(o) { return o && o.$ref ? deref(resolve(o.$ref)) : o; }
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  var servers = document.getElementById("servers");
  Object.keys(doc.servers || {}).forEach(function (name) {
    var s = doc.servers[name];
    servers.appendChild(el("li", name + ": " + s.protocol + "://" + s.host + (s.pathname || "")));
  });
  var ops = document.getElementById("operations");
  Object.keys(doc.operations || {}).forEach(function (id) {
    var op = doc.operations[id], channel = deref(op.channel);
    var box = el("div", "", "op " + op.action);
    var head = el("div");
    head.appendChild(el("span", op.action, "tag"));
    head.appendChild(el("code", channel.address));
    head.appendChild(document.createTextNode(" " + id + (op.summary ? " - " + op.summary : "")));
    box.appendChild(head);
    (op.messages || []).concat(op.reply ? op.reply.messages : []).forEach(function (ref) {
      var m = deref(ref);
      var label = (m.title ? m.title + ": " : "") + m.name;
      box.appendChild(el("div", label + " (" + m.contentType + ")"));
      box.appendChild(el("pre", JSON.stringify(m.payload, null, 2)));
    });
    ops.appendChild(box);
  });
  var schemas = document.getElementById("schemas"), all = (doc.components || {}).schemas || {};
  Object.keys(all).forEach(function (name) {
    schemas.appendChild(el("h3", name));
    schemas.appendChild(el("pre", JSON.stringify(all[name], null, 2)));
  });
})();
</script></body></html>
"""


def asyncapi_html(document: dict[str, Any]) -> str:
    """The HTML page showing ``document`` (an AsyncAPI document as a dict)."""
    embedded = json.dumps(document).replace("<", "\\u003c")
    title = html.escape(str(document.get("info", {}).get("title", "")))
    return _PAGE % {"title": title, "document": embedded}
