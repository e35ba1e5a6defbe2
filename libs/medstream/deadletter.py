"""Dead letters: invalid messages go, unchanged, to ``<topic>.dlt`` with their reason.

As in Sentry's arroyo, a handler raises ``InvalidMessage`` with a stable code and a
PHI-free sentence; the dead letter is produced and its acknowledgement awaited before
the source offset is committed; and the dead-letter rate is capped, so a bad deploy
halts a consumer instead of dead-lettering a whole topic.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from medstream.errors import InvalidMessage
from medstream.received import Received
from medstream.settings import Settings
from medstream.topics import dead_letter_topic

log = logging.getLogger(__name__)

__all__ = ["DeadLetterLimiter", "DeadLetterPublisher", "InvalidMessage"]


class DeadLetterRateExceeded(RuntimeError):
    """Too many recent messages were invalid: stop and retry rather than dead-letter."""


@dataclass
class DeadLetterLimiter:
    """Caps dead letters by their share of the last ``window`` messages and by run length.

    Once tripped, it refuses every dead letter for ``cooldown_s`` seconds, then lets
    dead-lettering start again with an empty window: a bad deploy dead-letters at most
    a short run per cool-down (and the error log says so each time), while a real
    flood of bad input from upstream drains slowly instead of stalling its partitions
    for good. ``cooldown_s`` 0 halts until the service restarts."""

    max_ratio: float
    window: int
    max_consecutive: int
    cooldown_s: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        self._recent: deque[bool] = deque(maxlen=self.window)
        self._consecutive = 0
        self._tripped_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterLimiter:
        """The limiter configured by ``MEDSTREAM_DEAD_LETTER_*``."""
        return cls(
            settings.dead_letter_max_ratio,
            settings.dead_letter_window,
            settings.dead_letter_max_consecutive,
            settings.dead_letter_cooldown_s,
        )

    def record_valid(self) -> None:
        """Count a message that was processed."""
        self._recent.append(False)
        self._consecutive = 0

    def admit_invalid(self) -> None:
        """Count an invalid message, or raise if dead-lettering it would pass the cap.

        The ratio is only enforced once the window is full, so a consumer's first few
        messages being bad is not mistaken for a bad deploy.
        """
        if self._tripped_at is not None:
            waited = self.clock() - self._tripped_at
            if not self.cooldown_s or waited < self.cooldown_s:
                raise DeadLetterRateExceeded(self._halted(waited))
            self._tripped_at = None  # the cool-down is over: start a fresh window
            self._recent.clear()
            self._consecutive = 0
        window = [*list(self._recent)[len(self._recent) - self.window + 1 :], True]
        invalid, seen = sum(window), len(window)
        if self._consecutive + 1 > self.max_consecutive or (
            seen >= self.window and invalid / seen > self.max_ratio
        ):
            self._tripped_at = self.clock()
            raise DeadLetterRateExceeded(
                f"{invalid} of the last {seen} messages were invalid "
                f"({self._consecutive + 1} in a row); dead-lettering stops. " + self._halted(0.0)
            )
        self._recent.append(True)
        self._consecutive += 1

    def _halted(self, waited: float) -> str:
        if not self.cooldown_s:
            return (
                "Consumption halts and retries: check the last deploy or the upstream "
                "feed, then restart the service."
            )
        left = max(0.0, self.cooldown_s - waited)
        return (
            f"Consumption pauses and resumes in {left:.0f} s "
            "(MEDSTREAM_DEAD_LETTER_COOLDOWN_S): check the last deploy or the upstream feed."
        )


def dead_letter_headers(
    received: Received, error: InvalidMessage, stage: str
) -> list[tuple[str, bytes]]:
    """The original headers plus the CONTRACT's ``error.*`` and ``original.*`` headers."""
    ours = {
        "error.stage": stage,
        "error.code": error.code,
        "error.message": error.reason,
        "error.class": type(error).__name__,
        "original.topic": received.topic,
        "original.partition": str(received.partition),
        "original.offset": str(received.offset),
        "original.timestamp": str(received.timestamp),
    }
    kept = [(k, v) for k, v in received.headers if k not in ours]
    return kept + [(k, v.encode()) for k, v in ours.items()]


class DeadLetterPublisher:
    """Writes dead letters and waits for the broker's acknowledgement of each."""

    def __init__(self, producer: AIOKafkaProducer, stage: str) -> None:
        self._producer = producer
        self.stage = stage

    async def publish(self, received: Received, error: InvalidMessage) -> None:
        """Produce the original bytes to the dead-letter topic; return once acknowledged."""
        topic = dead_letter_topic(received.topic)
        await self._producer.send_and_wait(
            topic,
            value=received.value,
            key=received.key,
            headers=dead_letter_headers(received, error, self.stage),
        )
        log.warning(
            "message dead-lettered",
            extra={
                "topic": received.topic,
                "partition": received.partition,
                "offset": received.offset,
                "message_id": received.message_id,
                "error_code": error.code,
                "stage": self.stage,
            },
        )
