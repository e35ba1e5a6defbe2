"""The local process supervisor: starts every service, restarts one that dies, and
stops them all on SIGTERM.

``medstream up`` runs it (``python -m medstream.supervisor``) in the background. It
writes each child's pid to ``<state>/services/<name>.pid``, so ``medstream status``
and ``down`` see the services, and a test can kill one and watch it come back. A
service that dies more than ``MAX_RESTARTS`` times in ``WINDOW_S`` seconds is left
down (a crash loop is a bug to fix, not to hide); the supervisor log says so.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from medstream.logging import configure_logging

MAX_RESTARTS, WINDOW_S = 5, 60.0
log = logging.getLogger("medstream.supervisor")


@dataclass
class Child:
    """One supervised service."""

    name: str
    executable: Path
    process: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    given_up: bool = False
    restart_at: float = 0.0


class Supervisor:
    """Keeps each service running until stopped."""

    def __init__(self, entry_points: dict[str, Path], folder: Path) -> None:
        self.folder = folder
        self.children = [Child(name, path) for name, path in entry_points.items()]
        self.stopping = False

    def start(self, child: Child) -> None:
        """Start ``child`` with its output appended to its log file."""
        with (self.folder / f"{child.name}.log").open("ab") as out:
            child.process = subprocess.Popen(
                [str(child.executable)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (self.folder / f"{child.name}.pid").write_text(str(child.process.pid))
        log.info("service started", extra={"service_name": child.name, "pid": child.process.pid})

    def tick(self) -> None:
        """Restart children that died, with a backoff, unless they crash-loop."""
        now = time.monotonic()
        for child in self.children:
            if child.given_up or child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at == 0.0:
                child.deaths.append(now)
                while child.deaths and now - child.deaths[0] > WINDOW_S:
                    child.deaths.popleft()
                if len(child.deaths) > MAX_RESTARTS:
                    child.given_up = True
                    log.error(
                        "service keeps dying; left down: fix it, then `medstream up`",
                        extra={"service_name": child.name, "exit_code": code},
                    )
                    continue
                child.restart_at = now + min(10.0, 0.5 * 2 ** (len(child.deaths) - 1))
                log.warning(
                    "service died; restarting",
                    extra={"service_name": child.name, "exit_code": code},
                )
            if now >= child.restart_at:
                child.restart_at = 0.0
                self.start(child)

    def stop(self, timeout_s: float = 25.0) -> None:
        """SIGTERM every child, wait, SIGKILL the rest, remove the pid files."""
        alive = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        for child in self.children:
            (self.folder / f"{child.name}.pid").unlink(missing_ok=True)

    def run(self) -> None:
        """Start everything and supervise until SIGTERM or SIGINT."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        for child in self.children:
            self.start(child)
        while not self.stopping:
            self.tick()
            time.sleep(0.5)
        self.stop()
        log.info("supervisor stopped")


def main() -> None:
    """``python -m medstream.supervisor FOLDER '{"name": "/path/to/entry-point"}'``."""
    folder, entry_points = Path(sys.argv[1]), json.loads(sys.argv[2])
    configure_logging("supervisor", "INFO", "json")
    Supervisor({k: Path(v) for k, v in entry_points.items()}, folder).run()


if __name__ == "__main__":
    main()
