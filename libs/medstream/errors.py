"""Errors that model and format code raise without depending on Kafka or the database."""

from __future__ import annotations


class InvalidMessage(Exception):
    """The message can never be processed. ``reason`` must not quote the message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
