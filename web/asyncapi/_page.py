"""The readable page of the AsyncAPI document: plain HTML rendered on the server."""

from __future__ import annotations

import json
from html import escape
from typing import Any

__all__ = ["render_page"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1,h2,h3,h4{line-height:1.2}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin-top:2rem}code,pre{font:13px ui-monospace,monospace;background:#f5f5f5}
pre{padding:.6rem;overflow:auto;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#fafafa}.message{border-left:4px solid #8ab;padding-left:1rem;margin:1.5rem 0}
.dir{font-size:12px;color:#fff;background:#468;border-radius:3px;padding:1px 6px}
"""


def render_page(document: dict[str, Any]) -> str:
    """Render the document's channels, messages, fields and examples as one HTML page."""
    info = document["info"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<p>AsyncAPI "
        + escape(document["asyncapi"])
        + " document: <a href='/asyncapi.json'>/asyncapi.json</a>. REST API: "
        "<a href='/docs'>/docs</a>.</p><ul>",
    ]
    for key, channel in document["channels"].items():
        parts.append(
            f"<li><a href='#{escape(key)}'>{escape(channel['title'])}</a> "
            f"<code>{escape(channel['address'])}</code></li>"
        )
    parts.append("</ul>")
    for key, channel in document["channels"].items():
        parts.append(_channel(document, key, channel))
    parts.append("</body></html>")
    return "".join(parts)


def _channel(document: dict[str, Any], key: str, channel: dict[str, Any]) -> str:
    server = document["servers"][channel["servers"][0]["$ref"].rsplit("/", 1)[1]]
    parts = [
        f"<h2 id='{escape(key)}'>{escape(channel['title'])}: "
        f"<code>{escape(server['protocol'])}://{escape(server['host'])}"
        f"{escape(channel['address'])}</code></h2>",
        f"<p>{escape(channel['description'])}</p>",
    ]
    ws = channel.get("bindings", {}).get("ws", {})
    for what in ("query", "headers"):
        if what in ws:
            title = "Query parameters" if what == "query" else "Handshake headers"
            parts.append(f"<h3>{title}</h3>{_fields(document, ws[what])}")
    parts.append("<h3>Close codes</h3><table><tr><th>code</th><th>reason</th><th>when</th></tr>")
    for close in channel.get("x-close-codes", []):
        parts.append(
            f"<tr><td>{close['code']}</td><td>{escape(close['reason'])}</td>"
            f"<td>{escape(close['when'])}</td></tr>"
        )
    parts.append("</table>")
    for operation in document["operations"].values():
        if operation["channel"]["$ref"] != f"#/channels/{key}":
            continue
        label = "client → server" if operation["action"] == "receive" else "server → client"
        parts.append(f"<h3>{escape(operation['title'])} <span class='dir'>{label}</span></h3>")
        for ref in operation["messages"]:
            name = ref["$ref"].rsplit("/", 1)[1]
            component = channel["messages"][name]["$ref"].rsplit("/", 1)[1]
            parts.append(_message(document, document["components"]["messages"][component]))
    return "".join(parts)


def _message(document: dict[str, Any], message: dict[str, Any]) -> str:
    schema = _resolve(document, message["payload"])
    parts = [
        f"<div class='message' id='{escape(message['name'])}'>",
        f"<h4>{escape(message['title'])} <code>{escape(message['name'])}</code></h4>",
        f"<p>{escape(message['summary'])}</p>",
        f"<p>{escape(message.get('description', ''))}</p>",
        _fields(document, schema),
    ]
    for example in message.get("examples", []):
        text = json.dumps(example["payload"], indent=2, ensure_ascii=False)
        parts.append(f"<p>Example: {escape(example['name'])}</p><pre>{escape(text)}</pre>")
    parts.append("</div>")
    return "".join(parts)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _fields(document: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> str:
    """A table of the schema's fields, nested objects flattened as ``a.b``; a union of
    objects (a root model) lists each variant."""
    variants = schema.get("oneOf") or (schema.get("anyOf") if "properties" not in schema else None)
    if variants and all("$ref" in v for v in variants):
        return "".join(
            f"<p><em>{escape(_resolve(document, v).get('title', ''))}</em>: "
            f"{escape(_resolve(document, v).get('description', ''))}</p>"
            + _fields(document, _resolve(document, v), prefix)
            for v in variants
        )
    rows = _rows(document, schema, prefix, depth=0)
    head = "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>"
    return head + "".join(rows) + "</table>"


def _rows(document: dict[str, Any], schema: dict[str, Any], prefix: str, depth: int) -> list[str]:
    rows: list[str] = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        target = _object_of(document, prop)
        about = prop.get("description") or (target or {}).get("description", "")
        rows.append(
            f"<tr><td><code>{escape(prefix + name)}</code></td>"
            f"<td>{escape(_type(document, prop))}</td>"
            f"<td>{'yes' if name in required else ''}</td><td>{escape(about)}</td></tr>"
        )
        if target is not None and depth < 4:
            rows += _rows(document, target, f"{prefix}{name}.", depth + 1)
    return rows


def _object_of(document: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any] | None:
    options = [prop, *prop.get("anyOf", [])]
    for option in options:
        if "$ref" in option:
            found = _resolve(document, option)
            if "properties" in found:
                return found
    return None


def _type(document: dict[str, Any], prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(_resolve(document, prop).get("title", "object"))
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(_type(document, option) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type(document, prop.get('items', {}))}"
    if "format" in prop:
        return f"{kind} ({prop['format']})"
    return str(kind)
