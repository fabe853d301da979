"""JSON request bodies sent without ``Content-Type: application/json``.

``curl -X POST .../data/refresh -d '{"days_back": 7}'`` (curl's ``-d`` labels the body
``application/x-www-form-urlencoded``), ``requests.post(url, data=json.dumps(...))`` with a
``text/plain`` label, ``fetch`` without headers: the guide's bodies, labelled otherwise. FastAPI
only parses a body labelled JSON (or unlabelled), so these were a 400 that read "Input should be a
valid dictionary". ``JsonBodyLabel`` relabels a body that *is* a JSON object as
``application/json`` before routing; any other body keeps its label and gets the 400 that
``body_problem`` words (what to send, and what was received).
"""

from __future__ import annotations

import json

JSON = b"application/json"
RELABELLED = (b"", b"text/plain", b"application/x-www-form-urlencoded")  # labels a JSON object is read through
MAX_BODY = 1 << 20  # larger bodies are never the guide's small JSON objects: left as sent


def _media_type(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return None


def _is_json_object(body: bytes) -> bool:
    text = body.strip()
    if not text.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


class JsonBodyLabel:
    """ASGI middleware: a POST/PUT/PATCH body that is a JSON object is read as JSON whatever its label."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        media = _media_type(scope["headers"])
        if media not in RELABELLED:  # JSON already, unlabelled (parsed as JSON by FastAPI), or another type
            return await self.app(scope, receive, send)
        chunks, size, complete = [], 0, False
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":  # the client left: hand over what came
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
            if size > MAX_BODY:
                break
        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        if complete and _is_json_object(body):
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", JSON)]}
        replay = list(chunks)

        async def replayed():
            return replay.pop(0) if replay else await receive()

        return await self.app(scope, replayed, send)


def body_problem(item: dict, content_type: str | None, path: str = "") -> str | None:
    """The 400's wording for a body that is no JSON object (None: not a body-shape problem)."""
    loc = tuple(item.get("loc", ()))
    if item.get("type") == "json_invalid":
        reason = (item.get("ctx") or {}).get("error") or item.get("msg")
        position = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        return f"malformed JSON body{position}: {reason}"
    if loc == ("body",) and item.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        example = '{"symbol": "NVDA"}' if path.startswith("/data/symbols") else '{"days_back": 7}'
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            got = f"a JSON {type(item.get('input')).__name__.replace('list', 'array').replace('str', 'string')}"
        else:
            got = f"Content-Type: {content_type or 'none'}"
        return f"the request body must be a JSON object such as {example} sent with Content-Type: application/json (got {got})"
    return None
