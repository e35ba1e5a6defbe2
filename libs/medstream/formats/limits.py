"""Input limits, and JSON parsing that enforces them without recursion.

Every inbound message is parsed under explicit limits, so that no input, however it
was built, can exhaust the stack, the CPU or the memory of a stage: each limit below
has a stable dead-letter code (docs/architecture.md lists them all).

JSON is parsed by the standard library's C decoder, guarded on both sides: numbers go
through hooks that refuse overlong digit strings and non-finite values before Python
converts them (a 5,000-digit integer is quadratic to convert, and refused outright
above 4,300 digits), a nesting deeper than the decoder can follow is caught as such,
and the parsed tree is then walked with an explicit stack (never recursion) to check
depth, string and array lengths and the total node count.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from medstream import budget
from medstream.errors import InvalidMessage


@dataclass(frozen=True)
class InputLimits:
    """What one inbound message may hold. The defaults are the product's limits."""

    json_max_depth: int = 64  # FHIR resources nest about 10 deep; Bundles about 20
    json_max_number_chars: int = 64  # FHIR decimals carry at most 18 significant digits
    json_max_string_chars: int = 16 * 1024 * 1024  # a base64 attachment, within a record
    json_max_array_items: int = 100_000
    json_max_nodes: int = 2_000_000
    fhir_max_entries: int = 10_000  # Bundle entries in one message
    hl7_max_segments: int = 10_000
    hl7_max_fields: int = 200_000  # field, component and repetition separators together
    text_max_chars: int = 1_000_000  # one note or report, about 500 pages
    dicom_max_elements: int = 100_000
    dicom_max_sequence_depth: int = 16
    patient_id_max_chars: int = 128


LIMITS = InputLimits()

# Only a \\u escape can put a NUL or an unpaired surrogate into a parsed JSON string
# (raw control characters are invalid JSON, and UTF-8 cannot encode surrogates), so the
# strings are searched for them only when the text holds such an escape.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class _NumberRefused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def load_json(raw: str, prefix: str, limits: InputLimits = LIMITS) -> Any:
    """Parse ``raw`` under ``limits``; raise ``InvalidMessage`` with the codes
    ``<prefix>.too_deep``, ``<prefix>.bad_number``, ``<prefix>.too_large_value`` or
    ``<prefix>.not_json``. Messages name the limit, never the content."""

    def number(text: str) -> float | int:
        if len(text) > limits.json_max_number_chars:
            raise _NumberRefused(
                f"A JSON number has {len(text)} characters, over the limit of "
                f"{limits.json_max_number_chars}."
            )
        value = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise _NumberRefused("A JSON number is too large to represent (it overflows).")
        return value

    def constant(name: str) -> float:
        raise _NumberRefused(f"JSON does not allow the number {name}.")

    try:
        data = json.loads(raw, parse_int=number, parse_float=number, parse_constant=constant)
    except _NumberRefused as refused:
        raise InvalidMessage(f"{prefix}.bad_number", refused.reason) from None
    except RecursionError:
        raise _too_deep(prefix, limits) from None
    except ValueError:
        raise InvalidMessage(f"{prefix}.not_json", "The message is not valid JSON.") from None
    check_tree(data, prefix, limits, characters=_RISKY_ESCAPE.search(raw) is not None)
    return data


def _too_deep(prefix: str, limits: InputLimits) -> InvalidMessage:
    return InvalidMessage(
        f"{prefix}.too_deep",
        f"The JSON nests deeper than the limit of {limits.json_max_depth} levels.",
    )


def _too_large(prefix: str, what: str) -> InvalidMessage:
    return InvalidMessage(f"{prefix}.too_large_value", what)


def _bad_text(prefix: str) -> InvalidMessage:
    return InvalidMessage(
        f"{prefix}.bad_text",
        "A JSON string holds a NUL character or an unpaired surrogate (invalid Unicode).",
    )


def check_tree(
    data: Any, prefix: str, limits: InputLimits = LIMITS, *, characters: bool = False
) -> None:
    """Walk a parsed JSON tree with an explicit stack and enforce the limits; with
    ``characters``, also refuse NUL characters and unpaired surrogates in strings."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes % 50_000 == 0:
            budget.check()
        if nodes > limits.json_max_nodes:
            raise _too_large(prefix, f"The JSON holds more than {limits.json_max_nodes} values.")
        if isinstance(node, str):
            if len(node) > limits.json_max_string_chars:
                raise _too_large(
                    prefix,
                    f"A JSON string has {len(node)} characters, over the limit of "
                    f"{limits.json_max_string_chars}.",
                )
            if characters and _BAD_CHARACTER.search(node):
                raise _bad_text(prefix)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > limits.json_max_depth:
            raise _too_deep(prefix, limits)
        if isinstance(node, list):
            if len(node) > limits.json_max_array_items:
                raise _too_large(
                    prefix,
                    f"A JSON array has {len(node)} items, over the limit of "
                    f"{limits.json_max_array_items}.",
                )
            stack.extend((item, depth + 1) for item in node)
        else:
            for key, value in node.items():
                if len(key) > limits.json_max_string_chars:
                    raise _too_large(prefix, "A JSON object key is over the length limit.")
                if characters and _BAD_CHARACTER.search(key):
                    raise _bad_text(prefix)
                stack.append((value, depth + 1))
