"""The processing-time budget of one message, and running CPU-heavy work off the loop.

A service's event loop also keeps its Kafka group membership alive (heartbeats). A
parse or a de-identification that held it for tens of seconds would let the group
session expire, rebalance the partitions, and make unrelated messages wait. So the
heavy, pure steps run in a worker thread (``offload``), and each message has a budget
(``MEDSTREAM_MESSAGE_BUDGET_S``): loops over a message's parts call ``check`` and stop
with ``<stage>.too_costly`` once it is spent, and the caller stops waiting a little
after that in any case.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from medstream.errors import InvalidMessage

P = ParamSpec("P")
T = TypeVar("T")

# A thread that overruns gets this long to reach its next check before the caller
# gives up waiting for it.
GRACE_S = 2.0


@dataclass(frozen=True)
class Deadline:
    """When the work on one message must stop, and the code its dead letter gets."""

    expires_at: float
    budget_s: float
    code: str

    def check(self) -> None:
        """Raise ``InvalidMessage`` with this deadline's code once it has passed."""
        if time.monotonic() > self.expires_at:
            raise self.exceeded()

    def exceeded(self) -> InvalidMessage:
        """The rejection of a message that outran its budget."""
        return InvalidMessage(
            self.code,
            f"Processing this message took longer than its {self.budget_s:g} s budget "
            "(MEDSTREAM_MESSAGE_BUDGET_S); it was set aside so the partition can go on.",
        )


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "medstream_deadline", default=None
)


def check() -> None:
    """Stop the current message's work if its budget is spent (no-op outside a budget,
    as in the CLI)."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check()


async def offload(
    stage: str, budget_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn`` in a worker thread under a budget of ``budget_s`` seconds; past it,
    raise ``InvalidMessage`` with the code ``<stage>.too_costly``."""
    deadline = Deadline(time.monotonic() + budget_s, budget_s, f"{stage}.too_costly")
    context = contextvars.copy_context()
    context.run(_CURRENT.set, deadline)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, lambda: context.run(fn, *args, **kwargs))
    try:
        return await asyncio.wait_for(future, budget_s + GRACE_S)
    except TimeoutError:
        raise deadline.exceeded() from None
