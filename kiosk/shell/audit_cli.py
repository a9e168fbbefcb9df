"""``python -m kiosk audit verify``: check the kiosk's hash-chained audit trail (``kiosk.audit``).

Prints the number of entries and the chain's head hash (compare it with the central's copy), or the
first broken link: which entry, and whether it was changed (``hash``), an entry before it was
changed or removed (``prev``), or entries are missing (``gap``).  Exit 0 intact, 1 broken.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiosk.shell import config


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="the audit trail: verify its hash chain")
    audit.add_argument("action", choices=("verify",), help="verify: walk the chain and name the first broken link")


def run(path: Path | None) -> int:
    from sync.store import KioskStore

    data_dir = config.load(path, check_files=False).kiosk.data_dir
    if not (data_dir / "kiosk.db").exists():
        print(f"no kiosk store at {data_dir / 'kiosk.db'}: nothing to verify")
        return 1
    store = KioskStore.open(data_dir)
    try:
        report = store.audit.verify()
    finally:
        store.close()
    if report.broken is None:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items()))
        print(f"audit chain intact: {report.entries} {'entry' if report.entries == 1 else 'entries'}, "
              f"head {report.head}")
        if kinds:
            print(f"  {kinds}")
        return 0
    b = report.broken
    print(f"audit chain BROKEN at entry {b.seq} ({b.problem}): expected {b.expected}, found {b.found}; "
          f"the {report.entries} entries before it are intact (head {report.head})")
    return 1
