"""The central's database: embedded SQLite by default, PostgreSQL when ``DATABASE_URL`` names one.

``DATABASE_URL`` takes the libpq URI form ``postgresql://USER[:PASSWORD]@[HOST][:PORT]/DBNAME`` with
optional query parameters ``host`` (a Unix-socket directory, as libpq allows), ``sslmode`` and
``connect_timeout``.  Anything else is refused at start-up with the reason, so a typo never falls back
to a fresh SQLite file unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DATABASE_URL_ENV = "DATABASE_URL"
_SCHEMES = ("postgresql", "postgres")
_QUERY_OPTIONS = ("sslmode", "connect_timeout", "application_name")


class DatabaseUrlError(ValueError):
    """``DATABASE_URL`` is not a PostgreSQL URL the central can use; the message says what is wrong."""


def sqlite(data_dir: Path) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": data_dir / "central.sqlite3",
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def postgresql(url: str) -> dict[str, Any]:
    """Django's ``DATABASES`` entry for a libpq URL."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise DatabaseUrlError(f"{DATABASE_URL_ENV} must start with postgresql:// (got {parts.scheme or 'no'} scheme)")
    name = unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise DatabaseUrlError(f"{DATABASE_URL_ENV} must name one database after the host, e.g. postgresql://…/tamga")
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - {"host", "port", *_QUERY_OPTIONS})
    if unknown:
        raise DatabaseUrlError(f"{DATABASE_URL_ENV} has unknown parameters: {', '.join(unknown)}")
    try:
        port = parts.port
    except ValueError as exc:
        raise DatabaseUrlError(f"{DATABASE_URL_ENV} has a bad port: {exc}") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": query.get("host") or unquote(parts.hostname or ""),
        "PORT": query.get("port") or (str(port) if port else ""),
        "OPTIONS": {key: query[key] for key in _QUERY_OPTIONS if key in query},
        # One connection per request thread is re-used for a minute; the server has a few threads.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def from_environment(environ: dict[str, str] | Any, data_dir: Path) -> dict[str, Any]:
    url = environ.get(DATABASE_URL_ENV, "").strip()
    return postgresql(url) if url else sqlite(data_dir)
