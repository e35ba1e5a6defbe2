"""What every FHIR resource MedStream makes shares: code systems, the AIAST security
label, and validation before a resource leaves.

Validation uses ``fhir.resources.R4B``, as inbound validation does: the elements
MedStream writes (DiagnosticReport, Observation, RiskAssessment, Provenance, Device,
AuditEvent) are the same in R4 (4.0.1) and R4B (4.3).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from pydantic import BaseModel, TypeAdapter

# MedStream's own code and identifier systems. A deployment that needs them under its
# own namespace maps them at the EHR interface engine; the values never change.
BASE = "https://medstream.dev/fhir"
ACTION_SYSTEM = f"{BASE}/CodeSystem/audit-action"
CHEXPERT_SYSTEM = f"{BASE}/CodeSystem/chexpert-observation"
RESULT_KIND_SYSTEM = f"{BASE}/CodeSystem/result-kind"
COMPONENT_SYSTEM = f"{BASE}/CodeSystem/result-component"
ACTOR_SYSTEM = f"{BASE}/sid/actor"
PSEUDONYM_SYSTEM = f"{BASE}/sid/patient-pseudonym"
MESSAGE_ID_SYSTEM = f"{BASE}/sid/inbound-message-id"
MODEL_CHECKSUM_SYSTEM = f"{BASE}/sid/model-sha256"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# HL7 v3 ObservationValue AIAST, "Artificial Intelligence asserted": the label the
# CONTRACT puts on every resource a model made.
AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}


class InvalidOutboundResource(ValueError):
    """A resource MedStream built failed FHIR validation: a bug, never the input's fault."""


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` itself, once it validates as FHIR R4; raises InvalidOutboundResource
    naming the failing paths (never values).

    The first resource of each *shape* (its keys, list lengths, JSON types and
    ``resourceType`` values, everywhere) is validated in full with fhir.resources, which
    also yields the FHIR primitive type of each of its values. A later resource of the
    same shape is then checked value by value against those primitive types (the ids,
    codes, dates, instants, decimals and URIs the EHR receives), which is what full
    validation would check again: its structural rules (required elements, choice
    types, unknown elements, nulls in lists) depend on the shape alone. Any value that
    fails is validated in full again, so the error is the same. A unit test holds the
    two paths to the same verdict on mutated resources."""
    shape = _shape(resource)
    checks = _PLANS.get(shape)
    if checks is not None and _values_valid(resource, checks):
        return resource
    model = _validate_fully(resource)
    if checks is None:
        if len(_PLANS) >= _MAX_PLANS:  # many one-off shapes: start over, stay bounded
            _PLANS.clear()
        _PLANS[shape] = _plan(resource, model)
    return resource


# Validation plans by resource shape: the (path, primitive check) of each value.
_PLANS: dict[Any, list[tuple[tuple[str | int, ...], Callable[[Any], Any]]]] = {}
_MAX_PLANS = 2048


def _validate_fully(resource: dict[str, Any]) -> BaseModel:
    model = get_fhir_model_class(resource["resourceType"])
    try:
        return model.model_validate(resource)
    except Exception as exc:  # noqa: BLE001  (pydantic or fhir.resources' own errors)
        errors = getattr(exc, "errors", None)
        where = (
            ", ".join(".".join(str(p) for p in e["loc"]) for e in errors()[:3])
            if callable(errors)
            else type(exc).__name__
        )
        raise InvalidOutboundResource(
            f"{resource['resourceType']} failed FHIR R4 validation at: {where}"
        ) from None


def _shape(value: Any) -> Any:
    """What full validation's structural rules see: keys and their order, list
    lengths, each value's JSON type, and ``resourceType`` values."""
    if isinstance(value, dict):
        return tuple(
            (key, item if key == "resourceType" and isinstance(item, str) else _shape(item))
            for key, item in value.items()
        )
    if isinstance(value, list):
        return (list, tuple(_shape(item) for item in value))
    return type(value)


def _values_valid(
    resource: dict[str, Any], checks: list[tuple[tuple[str | int, ...], Callable[[Any], Any]]]
) -> bool:
    for path, check in checks:
        value: Any = resource
        for step in path:
            value = value[step]
        try:
            check(value)
        except Exception:  # noqa: BLE001  (any failure: validate in full for the error)
            return False
    return True


def _plan(
    resource: dict[str, Any], model: BaseModel
) -> list[tuple[tuple[str | int, ...], Callable[[Any], Any]]]:
    """The primitive check of every value in ``resource``, found by walking the
    validated model beside it. An element the walk cannot place gives the plan
    ``_ALWAYS_FULL``: that shape is always validated in full."""
    checks: list[tuple[tuple[str | int, ...], Callable[[Any], Any]]] = []

    def walk(data: dict[str, Any], node: BaseModel, path: tuple[str | int, ...]) -> bool:
        fields = _fields_by_key(type(node))
        for key, value in data.items():
            if key == "resourceType" or value is None:
                continue
            name = fields.get(key)
            if name is None:
                return False
            child = getattr(node, name)
            items = value if isinstance(value, list) else [value]
            children = child if isinstance(value, list) else [child]
            if not isinstance(children, list) or len(children) != len(items):
                return False
            for index, (item, sub) in enumerate(zip(items, children, strict=True)):
                where = (*path, key, index) if isinstance(value, list) else (*path, key)
                if item is None:
                    continue
                if isinstance(item, dict):
                    if not isinstance(sub, BaseModel) or not walk(item, sub, where):
                        return False
                    continue
                check = _primitive_check(type(node), name)
                if check is None:
                    return False
                checks.append((where, check))
        return True

    if not walk(resource, model, ()):
        return _ALWAYS_FULL
    return checks


def _always_fail(value: Any) -> None:
    raise ValueError("validated in full")


# The plan of a shape the walk could not follow: its one check always fails, so every
# resource of that shape is validated in full.
_ALWAYS_FULL: list[tuple[tuple[str | int, ...], Callable[[Any], Any]]] = [((), _always_fail)]


@cache
def _fields_by_key(model: type[BaseModel]) -> dict[str, str]:
    """A model's field names by their JSON key (alias) and by their own name."""
    found = {}
    for name, info in model.model_fields.items():
        found[name] = name
        if info.alias:
            found[info.alias] = name
    return found


@cache
def _primitive_check(model: type[BaseModel], name: str) -> Callable[[Any], Any] | None:
    """Validation of one value of a primitive field, as the model validates it (the
    field's annotation, without Optional and List); None if it is not primitive."""
    annotation = _element_type(model.model_fields[name].annotation)
    if annotation is None or (isinstance(annotation, type) and issubclass(annotation, FhirBase)):
        return None  # a complex type (its values are objects), or a union of several
    # A FHIR primitive: an Annotated type (id, code, instant, decimal, ...) or bool.
    return TypeAdapter(annotation).validate_python


def _element_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _element_type(args[0]) if len(args) == 1 else None
    if origin is list:
        return _element_type(typing.get_args(annotation)[0])
    return annotation
