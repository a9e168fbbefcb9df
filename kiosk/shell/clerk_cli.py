"""``python -m kiosk clerk add|list|disable``: the office manager's commands for the clerks of a kiosk.

``add CLERK_ID --name NAME`` asks for the clerk's personal PIN twice (getpass on a terminal; two lines
on standard input otherwise, for provisioning scripts) — never from the command line, where it would
stay in the shell's history and the process list.  Only its scrypt hash is stored
(:mod:`kiosk.clerks`); every change goes to the audit trail.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiosk.clerks import ClerkSignIn
from kiosk.errors import InputRefused
from kiosk.i18n import Translator
from kiosk.pin import Pin
from kiosk.shell import config
from sync.store import KioskStore


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    clerk = sub.add_parser("clerk", help="the kiosk's clerks: add (PIN asked twice), list, disable")
    actions = clerk.add_subparsers(dest="clerk_action", required=True)
    add = actions.add_parser("add", help="add a clerk; the PIN is asked twice, never taken from argv")
    add.add_argument("clerk_id")
    add.add_argument("--name", required=True, help="the clerk's name as the day's list shows it")
    actions.add_parser("list", help="the clerks, with their state")
    disable = actions.add_parser("disable", help="a clerk who left: can no longer sign in")
    disable.add_argument("clerk_id")


@contextmanager
def _store(path: Path | None) -> Iterator[KioskStore]:
    store = KioskStore.open(config.load(path, check_files=False).kiosk.data_dir)
    try:
        yield store
    finally:
        store.close()


def _read_pin(prompt: str) -> Pin:
    if sys.stdin.isatty():
        return Pin(getpass.getpass(prompt))
    return Pin(sys.stdin.readline().strip())


def run(args: argparse.Namespace) -> int:
    with _store(args.config) as store:
        desk = ClerkSignIn(store.clerks,
                           audit=lambda kind, fields: store.audit.append(kind, fields))
        if args.clerk_action == "list":
            for record in store.clerks.all():
                state = "disabled" if record.disabled else ("locked" if record.locked_until else "active")
                print(f"{record.clerk_id:16} {state:9} {record.name}")
            return 0
        if args.clerk_action == "disable":
            if store.clerks.get(args.clerk_id) is None:
                print(f"no clerk {args.clerk_id!r}", file=sys.stderr)
                return 1
            desk.disable(args.clerk_id)
            print(f"clerk {args.clerk_id} disabled")
            return 0
        pin, again = _read_pin("clerk PIN (6-8 digits): "), _read_pin("the same PIN again: ")
        if pin != again:
            print("the two PINs differ; nothing was changed", file=sys.stderr)
            return 1
        try:
            desk.add(args.clerk_id, args.name, pin)
        except InputRefused as err:
            why = Translator("en").error(err)        # the technicians' language, as the other commands
            print(f"refused: {why}" + (f" ({err.detail})" if err.detail else ""), file=sys.stderr)
            return 1
        print(f"clerk {args.clerk_id} added")
        return 0
