"""Test support: ``RedisServer``, a real ``redis-server`` process the tests own.

The tests start their own server (never a fake) on a free loopback port in a private temp
directory, so they can also kill, pause and restart it. A missing binary is a failed set-up,
not a skipped test: :meth:`RedisServer.start` raises ``RuntimeError`` saying what to install.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_SECONDS = 10.0
"""How long :meth:`RedisServer.start` waits for the first PONG."""

STOP_TIMEOUT_SECONDS = 10.0
"""How long :meth:`RedisServer.stop` waits for a clean exit before it kills."""

_PORT_ATTEMPTS = 5

_LIVE: set[subprocess.Popen[bytes]] = set()
"""Servers still running; killed at interpreter exit so no test leaves one behind."""
_DIRS: set[Path] = set()
"""Server directories still present; removed at interpreter exit."""


@atexit.register
def _reap_all() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    _LIVE.clear()
    for path in list(_DIRS):
        shutil.rmtree(path, ignore_errors=True)
    _DIRS.clear()


class RedisServer:
    """One ``redis-server`` child process on ``127.0.0.1``.

    ``appendonly=True`` turns the append-only file on (``appendfsync always``) so data
    survives :meth:`stop` + :meth:`restart`; by default nothing is persisted.
    """

    def __init__(self, *, appendonly: bool = False) -> None:
        self.appendonly = appendonly
        self.port = 0
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._resume_timer: threading.Timer | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server (database 0)."""
        if not self.port:
            raise RuntimeError("the redis server was never started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process exists (paused or not)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and the matching resume."""
        return self._paused

    def start(self) -> RedisServer:
        """Start the server on a free port in a new temp dir; return when it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server was not found on PATH. The store tests start a real Redis: "
                "install the `redis-server` Debian package (apt-get install redis-server)."
            )
        if self.running:
            return self
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="broker-redis-"))
            _DIRS.add(self.dir)
        last: Exception | None = None
        for _ in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            try:
                self._launch(binary)
                return self
            except _PortTaken as exc:  # someone took the port between probe and bind
                last = exc
        raise RuntimeError(f"could not start redis-server: {last}")

    def restart(self) -> None:
        """Start the server again on the same port and directory (after stop/kill)."""
        if self.running:
            self.stop()
        binary = shutil.which("redis-server")
        if binary is None or self.dir is None or not self.port:
            raise RuntimeError("restart() needs a server that was started before")
        self._launch(binary)

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM; flushes the AOF when enabled).

        The directory stays for :meth:`restart`; :meth:`close` (or interpreter exit) removes it.
        """
        proc = self._proc
        if proc is None:
            return
        self._cancel_resume()
        if proc.poll() is None:
            self._signal(signal.SIGCONT)
            self._paused = False
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _LIVE.discard(proc)
        self._proc = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): a crash, with no chance to flush anything."""
        proc = self._proc
        if proc is None:
            return
        self._cancel_resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _LIVE.discard(proc)
        self._paused = False
        self._proc = None

    def pause(self, seconds: float | None = None) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered.

        With ``seconds`` it resumes by itself after that long; otherwise call :meth:`resume`.
        """
        if not self.running:
            raise RuntimeError("cannot pause a server that is not running")
        self._cancel_resume()
        self._signal(signal.SIGSTOP)
        self._paused = True
        if seconds is not None:
            timer = threading.Timer(seconds, self.resume)
            timer.daemon = True
            self._resume_timer = timer
            timer.start()

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        with self._lock:
            if self._paused and self.running:
                self._signal(signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            _DIRS.discard(self.dir)
            self.dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _launch(self, binary: str) -> None:
        assert self.dir is not None
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--daemonize", "no",
            "--logfile", "redis.log",
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self._proc = subprocess.Popen(
            args,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _LIVE.add(self._proc)
        self._paused = False
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self._log_tail()
                _LIVE.discard(self._proc)
                self._proc = None
                if "Address already in use" in log:
                    raise _PortTaken(f"port {self.port} is taken")
                raise RuntimeError(f"redis-server exited at start-up:\n{log}")
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.dir is None:
            return ""
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _signal(self, signum: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signum)

    def _cancel_resume(self) -> None:
        timer, self._resume_timer = self._resume_timer, None
        if timer is not None:
            timer.cancel()


class _PortTaken(RuntimeError):
    """The chosen port was taken before redis-server could bind it."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        s.settimeout(0.5)
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")
    return False
