"""The appliance tests' simulated kiosk: the simulated devices and a local central, one per module."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.sim.pcscd import PrivatePcscd
from devices.sim.softhsm import FACTORY_SO_PIN
from devices.sim.stack import SimulatedStack

REPO = Path(__file__).resolve().parents[2]
# Runs ``python ARGS`` refused writable+executable memory, as MemoryDenyWriteExecute=yes does (the
# kernel's PR_SET_MDWE, Linux 6.3, inherited across exec); exit status 77 when the kernel lacks it.
MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:        # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3)
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


@dataclass
class Provisioner:
    """``python -m provisioning`` against ``stack``, as a technician on a prepared image runs it."""

    stack: SimulatedStack
    inputs: Path        # what the technician brings: the central's CA, the SO PIN, trust anchors

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.stack.env}
        env.pop("TAMGA_CONFIG", None)      # provisioning must not lean on the stack's own kiosk.toml
        return env

    def code(self) -> str:
        """A fresh one-time enrollment code for the demo kiosk (``add-kiosk``; its earlier code stops working)."""
        assert self.stack.central is not None
        return self.stack.central.manage("add-kiosk", "demo-kiosk").strip()

    def args(self, root: Path, **override: str | None) -> list[str]:
        """Every flag (``None`` drops one: the question is asked), then ``--national-id-*``.

        Without ``enrollment_code=`` a fresh code is made for the run."""
        s = self.stack
        assert s.central and s.pcscd and s.softhsm and s.printer and s.national_ca
        if "enrollment_code" not in override:
            override = {**override, "enrollment_code": self.code()}
        flags = {"--kiosk-id": "demo-kiosk", "--office": "МонПасс СА, Бүртгэлийн нэгж — Дархан",
                 "--central-url": s.central.url, "--central-ca": str(s.central.tls_ca_path), "--office-code": "main",
                 "--reader": s.pcscd.reader_names[0], "--module": str(s.softhsm.module),
                 "--printer": f"127.0.0.1:{s.printer.port}",
                 "--factory-so-pin-file": str(self.inputs / "factory-so-pin"),
                 "--ca-chain": str(s.central.ca_chain_path)}
        flags.update({f"--{k.replace('_', '-')}": v for k, v in override.items()})
        out = ["--root", str(root)]
        for key, value in flags.items():
            if value is not None:
                out += [key, value]
        for path in s.national_ca.trust_anchor_paths:
            out += ["--national-id-root", str(path)]
        for path in s.national_ca.intermediate_paths:
            out += ["--national-id-intermediate", str(path)]
        return out

    def run(self, root: Path, *extra: str, **override: str | None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "provisioning", "--non-interactive", *self.args(root, **override), *extra]
        return subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=REPO, timeout=300,
                              check=False)

    def run_on_a_terminal(self, root: Path, typed: str, **override: str | None) -> subprocess.CompletedProcess[str]:
        """Interactive: stdin is a terminal on which ``typed`` was typed ahead (one answer a line)."""
        main, terminal = pty.openpty()
        try:
            os.write(main, typed.encode("utf-8"))
            return subprocess.run([sys.executable, "-m", "provisioning", *self.args(root, **override)],
                                  stdin=terminal, capture_output=True, text=True, env=self.env, cwd=REPO,
                                  timeout=300, check=False)
        finally:
            os.close(terminal)
            os.close(main)


@pytest.fixture(scope="module")
def provisioner(tmp_path_factory: pytest.TempPathFactory, private_pcscd: PrivatePcscd) -> Iterator[Provisioner]:
    workdir = tmp_path_factory.mktemp("appliance")
    stack = SimulatedStack(workdir / "stack").start(pcscd=private_pcscd)
    try:
        assert stack.central is not None
        inputs = workdir / "technician"
        inputs.mkdir()
        (inputs / "factory-so-pin").write_text(FACTORY_SO_PIN + "\n")
        stack.insert_card()       # the self-test reads a card
        yield Provisioner(stack, inputs)
    finally:
        stack.stop()
