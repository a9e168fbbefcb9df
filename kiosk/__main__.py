"""``python -m kiosk``: the technician commands (``kiosk.shell.cli``)."""

import sys

from kiosk.shell.cli import main

sys.exit(main())
