"""The FHIR REST API's reads of stored results: the search parameters the gateway
supports, turned into SQL on ``fhir_resource``, and the searchset Bundle.

Only what the CapabilityStatement (``capability_statement``) declares is accepted;
any other search parameter is refused with 400 rather than silently ignored, since a
client that believes a filter was applied would read the wrong patient's results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

READABLE = ("DiagnosticReport", "Observation", "RiskAssessment", "Provenance")
PATIENT_PARAMS = ("subject", "patient")
# Per type: its search parameters beyond the patient ones and _lastUpdated.
CODED = {"DiagnosticReport", "Observation", "RiskAssessment"}
DEFAULT_COUNT, MAX_COUNT = 20, 100
MAX_OFFSET = 100_000
# Result parameters that change nothing we return.
IGNORED = {"_format", "_pretty"}
PREFIXES = {"eq", "gt", "lt", "ge", "le"}


class SearchError(ValueError):
    """A search the API does not support, with a sentence saying what it does."""


@dataclass
class Search:
    """One search: its SQL conditions and values, its page, and its query for links."""

    resource_type: str
    where: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    count: int = DEFAULT_COUNT
    offset: int = 0
    query: list[tuple[str, str]] = field(default_factory=list)

    def add(self, condition: str, **values: Any) -> None:
        """AND one more condition (its placeholders are numbered to stay unique)."""
        renamed = condition
        for name, value in values.items():
            unique = f"{name}{len(self.values)}"
            renamed = renamed.replace(f":{name}", f":{unique}")
            self.values[unique] = value
        self.where.append(renamed)

    def sql(self) -> tuple[str, str]:
        """The page query and the count query."""
        where = " AND ".join(["resource_type = :resource_type", *self.where])
        page = (
            "SELECT id, resource, created_at FROM fhir_resource"  # noqa: S608 (built from constants)
            f" WHERE {where} ORDER BY created_at, id LIMIT :limit OFFSET :offset"
        )
        total = f"SELECT count(*) FROM fhir_resource WHERE {where}"  # noqa: S608
        return page, total

    def parameters(self) -> dict[str, Any]:
        """The values of ``sql()``'s placeholders."""
        return {
            **self.values,
            "resource_type": self.resource_type,
            "limit": self.count,
            "offset": self.offset,
        }


def _whole(value: str) -> bool:
    """ASCII digits only ("²".isdigit() is true), and not absurdly long."""
    return value.isascii() and value.isdigit() and len(value) <= 9


def patient_reference(value: str) -> str:
    """``Patient/ID`` from ``ID``, ``Patient/ID`` or an absolute URL ending so."""
    parts = value.strip().rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return f"Patient/{parts[-1]}"
    if len(parts) == 1:
        return f"Patient/{parts[0]}"
    return value  # another type of subject: matches nothing stored


def _instant(value: str) -> tuple[datetime, datetime]:
    """The range a FHIR date or dateTime covers, to its precision: a day, a minute, a
    second, or an instant."""
    try:
        if len(value) == 10:
            start = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        clock = value[11:].split("+", maxsplit=1)[0].split("-", maxsplit=1)[0].rstrip("Z")
        width = (
            timedelta(minutes=1)
            if clock.count(":") == 1
            else timedelta(seconds=1)
            if "." not in clock
            else timedelta(microseconds=1)
        )
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment, moment + width
    except (ValueError, OverflowError):
        raise SearchError(
            f"_lastUpdated needs a FHIR date or dateTime (2026-11-30 or "
            f"2026-11-30T10:00:00Z) before 9999, not {value[:40]!r}"
        ) from None


def parse_search(resource_type: str, params: list[tuple[str, str]]) -> Search:
    """The search that ``params`` (the query string, in order) asks of ``resource_type``."""
    search = Search(resource_type)
    for name, value in params:
        if name in IGNORED:
            continue
        if name == "_count":
            if not _whole(value) or not 1 <= int(value) <= MAX_COUNT:
                raise SearchError(f"_count must be a whole number from 1 to {MAX_COUNT}")
            search.count = int(value)
            continue
        if name == "_offset":
            if not _whole(value) or int(value) > MAX_OFFSET:
                raise SearchError(f"_offset must be a whole number up to {MAX_OFFSET}")
            search.offset = int(value)
            continue
        search.query.append((name, value))
        if name in PATIENT_PARAMS:
            search.add(
                "ehr_patient_reference = ANY(:patient)",
                patient=[patient_reference(v) for v in value.split(",")],
            )
        elif name == "_lastUpdated":
            prefix = value[:2] if value[:2] in PREFIXES else "eq"
            start, end = _instant(value[2:] if value[:2] in PREFIXES else value)
            condition = {
                "eq": "created_at >= :start AND created_at < :end",
                "gt": "created_at >= :end",
                "ge": "created_at >= :start",
                "lt": "created_at < :start",
                "le": "created_at < :end",
            }[prefix]
            search.add(condition, start=start, end=end)
        elif name == "code" and resource_type in CODED:
            alternatives = []
            for token in value.split(","):
                system, bar, code = token.rpartition("|")
                coding: dict[str, str] = {"code": code}
                if bar and system:
                    coding["system"] = system
                alternatives.append(json.dumps({"code": {"coding": [coding]}}))
            search.add("resource @> ANY(CAST(:codes AS jsonb[]))", codes=alternatives)
        else:
            supported = ", ".join(supported_params(resource_type))
            raise SearchError(
                f"{resource_type} cannot be searched by {name[:40]!r}; supported: {supported}"
            )
    if not any(name in PATIENT_PARAMS for name, _ in search.query):
        raise SearchError(
            "a search of results must name the patient (subject= or patient=): "
            "results are read one patient at a time"
        )
    return search


def supported_params(resource_type: str) -> list[str]:
    """The search parameters ``resource_type`` supports, as the capability statement
    lists them."""
    names = ["subject", "patient", "_lastUpdated"]
    if resource_type in CODED:
        names.append("code")
    return names


def with_last_updated(resource: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The stored resource with ``meta.lastUpdated``: when MedStream stored it."""
    meta = dict(resource.get("meta") or {})
    meta.setdefault("lastUpdated", created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    return {**resource, "meta": meta}


def searchset(
    search: Search, base: str, rows: list[tuple[str, dict[str, Any], datetime]], total: int
) -> dict[str, Any]:
    """The searchset Bundle of one page, with self, next and previous links."""

    def link(offset: int) -> str:
        query = [*search.query, ("_count", str(search.count)), ("_offset", str(offset))]
        return f"{base}/{search.resource_type}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(search.offset)}]
    if search.offset + search.count < total:
        links.append({"relation": "next", "url": link(search.offset + search.count)})
    if search.offset > 0:
        links.append({"relation": "previous", "url": link(max(0, search.offset - search.count))})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{search.resource_type}/{ident}",
                "resource": with_last_updated(resource, created_at),
                "search": {"mode": "match"},
            }
            for ident, resource, created_at in rows
        ],
    }


def capability_statement(base: str, token_endpoint: str) -> dict[str, Any]:
    """What the API implements, and nothing more."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    read = [
        {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": _param_type(name)}
                for name in supported_params(resource_type)
            ],
        }
        for resource_type in READABLE
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now,
        "kind": "instance",
        "software": {"name": "MedStream gateway"},
        "implementation": {"description": "MedStream results and inbound FHIR", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Reads and searches serve MedStream's stored results. "
                "POST /fhir takes a transaction or batch Bundle and POST /fhir/{type} any "
                "resource, for processing: both answer 202 once the input is on "
                "ehr.inbound.fhir; nothing posted is stored or readable here.",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services: private_key_jwt client "
                    f"assertion at {token_endpoint}; system/*.read for reads, "
                    "system/*.write for posts.",
                },
                "resource": read,
                # Posts are accepted for processing (202): the resources go to
                # ehr.inbound.fhir, not into this server's store.
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [],
            }
        ],
    }


def _param_type(name: str) -> str:
    return {"subject": "reference", "patient": "reference", "_lastUpdated": "date"}.get(
        name, "token"
    )
