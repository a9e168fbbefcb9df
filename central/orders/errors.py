"""The API's refusals: an HTTP status and a stable ``error`` code, rendered as JSON by ``api``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with a stable code; ``extra`` goes into the JSON body next to ``error`` and ``message``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}
