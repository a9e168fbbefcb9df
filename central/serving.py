"""waitress glue: its own refusals (malformed HTTP, oversize headers or body) answered as JSON too.

waitress refuses some requests before the WSGI application sees them and writes a text/plain page
for them.  Every answer of the API is JSON (``central/openapi.yaml``), so the server's channel
uses an error task that renders the same ``{"error": code, "message": text}`` body.
"""

from __future__ import annotations

import json
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

MAX_REQUEST_BODY = 1 << 20
"""waitress's body limit; Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is lower and refuses first with 413 JSON."""

_CODES = {400: "bad_request", 413: "request_too_large", 431: "request_too_large", 501: "not_implemented"}


class JsonErrorTask(ErrorTask):  # type: ignore[misc]
    def execute(self) -> None:
        error = self.request.error
        code = _CODES.get(error.code, "bad_request" if error.code < 500 else "internal_error")
        body = json.dumps({"error": code, "message": f"{error.reason}: {error.body}"}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):  # type: ignore[misc]
    error_task_class = JsonErrorTask


def create_server(application: Any, **kwargs: Any) -> Any:
    """``waitress.create_server`` whose refusals are JSON."""
    import waitress

    server = waitress.create_server(application, max_request_body_size=MAX_REQUEST_BODY, **kwargs)
    server.channel_class = JsonErrorChannel
    return server
