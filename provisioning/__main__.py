"""``python -m provisioning``: set up a kiosk (see :mod:`provisioning.cli`)."""

import sys

from provisioning.cli import main

if __name__ == "__main__":
    sys.exit(main())
