"""The fast path of ``validated`` (a resource's shape validated once in full, then its
values one by one against their FHIR primitive types) reaches the same verdict as full
validation with fhir.resources, on real resources and on mutated copies of them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medstream import fhir_r4
from medstream.audit.trail import audit_event_resource
from medstream.envelope import Envelope
from medstream.events import AuditOutcome, AuditRecord
from medstream.fhir_r4 import InvalidOutboundResource, validated
from medstream.writeback.resources import build
from tests.unit.test_writeback_resources import ISSUED, PATIENT, imaging, monitoring, notes


def audit_event() -> dict[str, Any]:
    event = Envelope[AuditRecord](
        event_id="5b0c9d0e-8a57-4d69-9a5c-1d4f3c1b2a10",
        event_type="medstream.audit.v1",
        schema_version=1,
        correlation_id="msg-1",
        occurred_at=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        patient_pseudonym="psn-abcdefghijklmnopqrst",
        payload=AuditRecord(
            actor="deid",
            action="deid.completed",
            outcome=AuditOutcome.SUCCESS,
            entity="msg-1",
            message_id="msg-1",
            details={"records": 1},
        ),
    )
    return audit_event_resource(event, datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC))


def resources() -> list[dict[str, Any]]:
    made = [audit_event()]
    for result in (monitoring(), imaging(), notes()):
        made += [
            r.resource for r in build(result, result_event_id="e-1", patient=PATIENT, issued=ISSUED)
        ]
    return made


RESOURCES = resources()


def full_verdict(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except Exception:  # noqa: BLE001
        return False
    return True


def fast_verdict(resource: dict[str, Any]) -> bool:
    try:
        validated(resource)
    except InvalidOutboundResource:
        return False
    return True


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [
            p for k, v in value.items() if k != "resourceType" for p in leaf_paths(v, (*path, k))
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))]
    return [path]


def put(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = resource
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


# Values of the same JSON types as real ones, valid for some FHIR primitives and not
# for others: empty, blank, padded, wrong formats, extreme numbers.
BAD_STRINGS = st.sampled_from(
    ["", " ", " x", "x ", "a b", "not a date", "2026-13-01", "2026-11-30T25:00:00Z",
     "2026-11-30", "2026-11-30T08:00:00", "urn:uuid:1", "has/slash", "ü" * 3, "x" * 70,
     "1.5", "-0", "true", "\n", "a\tb", "http://x y"]
)  # fmt: skip
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70))


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r["resourceType"])
def test_real_resources_pass_both_paths_twice(resource: dict[str, Any]) -> None:
    assert full_verdict(resource)
    assert validated(copy.deepcopy(resource)) == resource  # plans the shape
    assert validated(copy.deepcopy(resource)) == resource  # the fast path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_value_gets_the_same_verdict_as_full_validation(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(RESOURCES))
    validated(copy.deepcopy(original))  # the shape is planned
    mutated = copy.deepcopy(original)
    path = data.draw(st.sampled_from(leaf_paths(mutated)))
    old = eval_path(mutated, path)
    if isinstance(old, bool):
        new: Any = data.draw(st.booleans())
    elif isinstance(old, int | float):
        new = data.draw(NUMBERS)
    else:
        new = data.draw(st.one_of(BAD_STRINGS, st.text(max_size=12)))
    put(mutated, path, new)
    assert fast_verdict(copy.deepcopy(mutated)) == full_verdict(mutated), (path, new)


def eval_path(resource: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = resource
    for step in path:
        node = node[step]
    return node


def test_a_changed_shape_is_validated_in_full() -> None:
    resource = copy.deepcopy(RESOURCES[0])
    validated(copy.deepcopy(resource))
    resource["agent"][0]["unknownElement"] = "x"  # a new shape: fhir.resources refuses it
    with pytest.raises(InvalidOutboundResource, match="agent"):
        validated(resource)
    resource = copy.deepcopy(RESOURCES[0])
    del resource["agent"]  # a required element missing
    with pytest.raises(InvalidOutboundResource):
        validated(resource)


def test_a_bad_value_in_a_known_shape_names_its_path() -> None:
    resource = copy.deepcopy(RESOURCES[0])
    validated(copy.deepcopy(resource))
    resource["recorded"] = "yesterday"
    with pytest.raises(InvalidOutboundResource, match="recorded") as raised:
        validated(resource)
    assert "yesterday" not in str(raised.value)  # paths, never values


def test_the_plans_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fhir_r4, "_MAX_PLANS", 3)
    fhir_r4._PLANS.clear()
    for n in range(1, 8):
        resource = copy.deepcopy(RESOURCES[0])
        resource["subtype"] = resource["subtype"] * n  # a new shape each time
        validated(resource)
        assert len(fhir_r4._PLANS) <= 3
    json.dumps(RESOURCES)  # untouched


def test_a_resource_type_that_is_not_text_is_refused_not_crashed() -> None:
    resource = copy.deepcopy(RESOURCES[0])
    resource["agent"][0]["who"]["resourceType"] = {"not": "text"}
    with pytest.raises(InvalidOutboundResource):
        validated(resource)
