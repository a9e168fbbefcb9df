"""``python -m kiosk.demo``: scripted visits through every flow on simulated devices (``kiosk.shell.demo``)."""

import sys

from kiosk.shell.demo import main

if __name__ == "__main__":
    sys.exit(main())
