"""Reference central registration service: orders, kiosk credentials and a django-ca issuing CA.

Run it with ``python -m central serve --data-dir DIR``; the kiosk talks to it through the JSON API
described in ``central/openapi.yaml`` (client: :mod:`sync.central_client`).
"""

from __future__ import annotations

DATA_DIR_ENV = "TAMGA_CENTRAL_DATA_DIR"
"""Environment variable that points the Django settings at the service's data directory."""

CRL_REFRESH_S = 20.0
"""How often ``serve`` looks for revocations newer than the CRL (``--crl-refresh-s``): well inside
the 60 s promised for a revocation made outside the API."""
