"""Benchmark support: reference servers run as child processes of a benchmark script.

Each benchmark compares the broker with a minimal aiohttp server of its own; that server runs
in separate processes (started with this script's own ``--...-server PORT`` option) so that
the client and the servers do not share an event loop.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECONDS = 30.0


class ChildServers:
    """``count`` copies of ``script <args...>`` serving one loopback ``port`` (SO_REUSEPORT).

    ``args`` is the script's command line after the interpreter; ``settle`` is how long to
    wait after the port first accepts, so that sibling processes bind too.
    """

    def __init__(
        self, script: str, args: Sequence[str], port: int, count: int = 1, settle: float = 0.0
    ) -> None:
        self.script = script
        self.args = list(args)
        self.port = port
        self.count = count
        self.settle = settle
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The servers' base URL."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pids(self) -> list[int]:
        """Process ids of the running copies."""
        return [p.pid for p in self.procs]

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> ChildServers:
        """Start every copy and wait until the port accepts connections."""
        for _ in range(self.count):
            self.procs.append(
                subprocess.Popen([sys.executable, self.script, *self.args], cwd=str(REPO))
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError("a reference server exited at start-up")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                time.sleep(self.settle)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the reference server did not start")

    def stop(self) -> None:
        """SIGTERM every copy and wait for it (SIGKILL after 10 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
