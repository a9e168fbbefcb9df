"""``python -m provisioning.probe MODULE``: load one PKCS#11 module and print its token as JSON.

Run in a subprocess per module, so that a vendor module that hangs or crashes (or clashes with
another module's C_Initialize) cannot take the provisioning run with it.  Prints
``{"ok": true, "token": {...}}`` or ``{"ok": false, "error": "...", "reason": "..."}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m provisioning.probe MODULE", file=sys.stderr)
        return 2
    from devices.token import Pkcs11Token
    from kiosk.errors import KioskError

    try:
        adapter = Pkcs11Token(args[0], rescan=True)
        info = adapter.present()
    except KioskError as err:
        print(json.dumps({"ok": False, "error": err.detail or err.key, "reason": err.key, "data": err.data},
                         default=str))
        return 0
    print(json.dumps({"ok": True, "token": dataclasses.asdict(info)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
