"""The committed schemas/ files are what the code generates."""

import json
from pathlib import Path

from medstream import contracts
from medstream.paths import SCHEMAS_DIR
from medstream.topics import ALL_TOPICS


def test_committed_schemas_match_the_code() -> None:
    problems = contracts.drift(SCHEMAS_DIR)
    assert not problems, f"run `medstream schemas export`: {problems}"


def test_drift_is_detected(tmp_path: Path) -> None:
    contracts.export(tmp_path)
    assert contracts.drift(tmp_path) == []
    schema = next(tmp_path.glob("topics/*.json"))
    schema.write_text(schema.read_text().replace('"title"', '"titel"', 1))
    (tmp_path / "topics" / "stale.schema.json").write_text("{}")
    problems = contracts.drift(tmp_path)
    assert str(schema.relative_to(tmp_path)) in problems
    assert "topics/stale.schema.json" in problems


def test_asyncapi_lists_every_topic_with_its_dead_letter_headers() -> None:
    document = contracts.asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {topic.name for topic in ALL_TOPICS}
    dlt = document["components"]["messages"]["ehr-inbound-hl7v2-dlt"]
    assert "error.code" in dlt["headers"]["properties"]


def test_internal_topics_have_an_enveloped_json_schema() -> None:
    for topic in ALL_TOPICS:
        schema = contracts.topic_schema(topic)
        if topic.payload is not None:
            assert schema is not None
            assert {"event_id", "correlation_id", "schema_version", "payload"} <= set(
                schema["properties"]
            )
            json.dumps(schema)
