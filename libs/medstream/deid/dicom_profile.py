"""DICOM de-identification: PS3.15's Basic Profile in full, an allow-list, and the
burned-in annotation policy.

The profile is three tables in ``policy/``, read once:

- ``dicom_e11.csv``: Table E.1-1's action for every attribute it names (generated from
  the standard's 2026c edition, never typed by hand);
- ``dicom.csv``: MedStream's own rows on top: the pseudonym, the Retain Longitudinal
  Temporal Information with Modified Dates and Retain Patient Characteristics options,
  and the allow-list of attributes that reading the pixels needs;
- ``dicom_private_keep.csv``: private attributes reviewed as safe (none today).

Everything else is removed: an attribute neither table names, curves (50xx), overlays
(60xx), group lengths and private tags. The walk uses an explicit stack, so a deeply
nested sequence cannot exhaust the interpreter's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from medstream import budget

DATE_VRS = frozenset({"DA", "DT"})
# Meta elements that name the sending, receiving or source application (AE titles,
# addresses) or carry private information: removed from the file meta group.
META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020026, 0x00020027, 0x00020028,
               0x00020100, 0x00020102)  # fmt: skip


Row = dict[str, str]
# Edits or deletes one element of a data set, given its resolved action.
ElementAction = Callable[[Dataset, DataElement, str], None]


@dataclass(frozen=True)
class BurnedInRule:
    """One way to tell that an instance carries text in its pixels."""

    attribute: str
    test: str  # equals | in | startswith | contains
    values: tuple[str, ...]
    reason: str

    def matches(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` is caught by this rule."""
        raw = dataset.get(self.attribute)
        if raw is None:
            return False
        values = list(raw) if isinstance(raw, (list, tuple, MultiValue)) else [raw]
        texts = [str(v).strip().upper() for v in values]
        if self.test == "equals":
            return any(t == v for t in texts for v in self.values)
        if self.test == "in":
            return any(t in self.values for t in texts)
        if self.test == "startswith":
            return any(t == v or t.startswith(v + ".") for t in texts for v in self.values)
        return any(v in t for t in texts for v in self.values)


@dataclass(frozen=True)
class DicomProfile:
    """The resolved DICOM policy: what happens to each attribute."""

    basic: dict[int, str]  # Table E.1-1: tag -> D, Z, X, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*
    masked: tuple[tuple[int, int, int, int, str], ...]  # (group, element, masks, action)
    ours: dict[int, str]  # tag -> K, P, S, B, A, U, Z, X
    private_keep: frozenset[tuple[str, int, int]]  # (creator, group, element low byte)
    burned_in: tuple[BurnedInRule, ...]

    @classmethod
    def from_rows(
        cls, e11: list[Row], ours: list[Row], private_keep: list[Row], burned_in: list[Row]
    ) -> DicomProfile:
        """The profile from its four tables' rows."""
        basic: dict[int, str] = {}
        masked: list[tuple[int, int, int, int, str]] = []
        for row in e11:
            group, element = row["tag"].strip("()").split(",")
            if "x" in group + element:
                masked.append((*_mask(group), *_mask(element), row["action"]))
            else:
                basic[(int(group, 16) << 16) | int(element, 16)] = row["action"]
        keep = frozenset(
            (row["creator"].strip(), int(row["group"], 16), int(row["element"], 16))
            for row in private_keep
        )
        rules = tuple(
            BurnedInRule(
                row["attribute"],
                row["test"],
                tuple(v.strip().upper() for v in row["values"].split("|")),
                row["reason"],
            )
            for row in burned_in
        )
        return cls(
            basic, tuple(masked), {_tag(row["tag"]): row["action"] for row in ours}, keep, rules
        )

    def action(self, tag: BaseTag, vr: str, creator: str | None = None) -> str:
        """What happens to an element: one of K, P, S, B, A, U, Z, X, or R (a sequence
        whose items are walked with the same rules)."""
        if tag.element == 0:
            return "X"  # group lengths: pydicom writes them again where needed
        if tag.is_private:
            return self._private(tag, creator)
        if tag.group & 0xFF00 in (0x5000, 0x6000):
            return "X"  # curves and overlays, whatever their element
        if tag in self.ours:
            action = self.ours[tag]
            return "R" if action == "K" and vr == "SQ" else action
        basic = self.basic.get(int(tag)) or self._masked(tag)
        return "X" if basic is None else _resolve(basic, vr)

    def _masked(self, tag: BaseTag) -> str | None:
        for group, group_mask, element, element_mask, action in self.masked:
            if tag.group & group_mask == group and tag.element & element_mask == element:
                return action
        return None

    def _private(self, tag: BaseTag, creator: str | None) -> str:
        if not self.private_keep:
            return "X"
        if tag.is_private_creator:
            return "K" if any(g == tag.group for _, g, _ in self.private_keep) else "X"
        low = tag.element & 0xFF
        return "K" if (creator or "", tag.group, low) in self.private_keep else "X"

    def burned_in_reason(self, dataset: Dataset) -> str | None:
        """Why ``dataset`` must be assumed to carry burned-in text, if it must."""
        for rule in self.burned_in:
            if rule.matches(dataset):
                return rule.reason
        for element in dataset:
            if element.tag.group & 0xFF01 == 0x6000 and element.tag.element == 0x0102:
                try:
                    position = int(element.value or 0)
                except (TypeError, ValueError):
                    position = 1
                if position:
                    return "an overlay is stored in the pixel data's unused high bits"
        return None

    def walk(self, dataset: Dataset, apply: ElementAction) -> None:
        """Resolve every element of ``dataset`` and its sequences, depth-first with an
        explicit stack, and hand each to ``apply`` (which edits or deletes it)."""
        stack = [dataset]
        seen = 0
        while stack:
            current = stack.pop()
            for element in list(current):
                seen += 1
                if seen % 1000 == 0:
                    budget.check()
                creator = _creator(current, element) if element.tag.is_private else None
                action = self.action(element.tag, element.VR, creator)
                if action == "R":
                    if element.VR == "SQ":
                        stack.extend(element.value)
                    continue
                apply(current, element, action)


def _resolve(basic: str, vr: str) -> str:
    """Table E.1-1's action, under the two options MedStream applies."""
    codes = set(basic.replace("*", "").split("/"))
    if vr in DATE_VRS and codes & {"D", "Z", "X"}:
        return "S"  # Retain Longitudinal Temporal Information with Modified Dates
    if vr == "TM" and codes & {"D", "Z", "X"}:
        return "K"  # whole-day shifts leave times as they were
    if "U" in codes:
        return "U" if vr == "UI" else ("R" if vr == "SQ" else "X")
    if "X" in codes:
        return "X"
    return "Z"  # Z, D and Z/D: present, but empty (a dummy would only invent data)


def _creator(dataset: Dataset, element: DataElement) -> str | None:
    block = element.tag.element >> 8
    if block < 0x10:
        return None
    owner = dataset.get((element.tag.group << 16) | block)
    return str(owner.value).strip() if owner is not None else None


def _tag(text: str) -> int:
    group, element = text.strip("()").split(",")
    return (int(group, 16) << 16) | int(element, 16)


def _mask(text: str) -> tuple[int, int]:
    value = int(text.replace("x", "0"), 16)
    mask = int("".join("0" if c == "x" else "F" for c in text), 16)
    return value, mask
