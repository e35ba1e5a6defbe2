"""The supervisor restarts a service that dies, with a backoff, gives up on a crash
loop, and stops what it started."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medstream import supervisor
from medstream.supervisor import MAX_RESTARTS, Supervisor


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def settle(child: supervisor.Child) -> None:
    assert child.process is not None
    deadline = time.monotonic() + 10
    while child.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_dying_service_is_restarted_then_left_down_when_it_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: clock[0])
    boss = Supervisor({"flaky": script(tmp_path, "flaky", "exit 3")}, tmp_path)
    (child,) = boss.children
    boss.start(child)
    starts = 1
    for _ in range(MAX_RESTARTS + 3):
        settle(child)
        pid = child.process.pid if child.process else None
        boss.tick()  # notes the death, schedules the restart
        clock[0] += 11  # past the longest backoff, inside the one-minute window
        boss.tick()
        if child.process and child.process.pid != pid:
            starts += 1
    assert child.given_up
    assert starts == MAX_RESTARTS + 1
    assert int((tmp_path / "flaky.pid").read_text()) == child.process.pid  # type: ignore[union-attr]


def test_stop_ends_the_children_and_removes_their_pid_files(tmp_path: Path) -> None:
    boss = Supervisor({"steady": script(tmp_path, "steady", "exec sleep 60")}, tmp_path)
    (child,) = boss.children
    boss.start(child)
    assert (tmp_path / "steady.pid").exists()
    boss.stop(timeout_s=5)
    assert child.process is not None
    assert child.process.poll() is not None
    assert not (tmp_path / "steady.pid").exists()
