import importlib

import pytest

from medstream.consumer import ConsumerSet
from medstream.deployment import SERVICES
from medstream.kafka import topic_config
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS, BY_NAME, dead_letter_topic


def test_names_are_unique() -> None:
    assert len(BY_NAME) == len(ALL_TOPICS)


def test_every_inbound_topic_has_a_registered_dead_letter_topic() -> None:
    for topic in ALL_TOPICS:
        if topic.name.startswith("ehr.inbound.") and not topic.is_dead_letter:
            assert topic.dead_letter == f"{topic.name}.dlt"
            assert topic.dead_letter in BY_NAME


def test_contract_topics_exist() -> None:
    for name in ("ehr.inbound.fhir", "ehr.inbound.hl7v2", "ehr.inbound.dicom", "ehr.outbound.fhir"):
        assert name in BY_NAME


def test_every_stage_that_dead_letters_has_its_dead_letter_topic() -> None:
    """Each consuming service names the topics it consumes (CONSUMES, which its wiring
    subscribes); a dead letter from any of them must have a registered topic to go to,
    and topic creation makes every registered topic."""
    stages = [s.name for s in SERVICES if s.consumes]  # the gateway consumes nothing
    consumed = set()
    for stage in stages:
        app = importlib.import_module(f"medstream_{stage}.app")
        assert app.CONSUMES, stage
        for topic in app.CONSUMES:
            consumed.add(topic)
            dead = dead_letter_topic(topic)
            assert dead in BY_NAME, f"{stage} dead-letters {topic} to {dead}, which is not created"
            assert BY_NAME[dead].is_dead_letter
    assert "medstream.audit" in consumed
    settings = Settings()
    assert all(topic_config(t, settings) for t in ALL_TOPICS)


def test_subscribing_a_registered_topic_without_dead_letters_fails_fast() -> None:
    consumers = ConsumerSet(Settings())
    with pytest.raises(ValueError, match="no dead-letter topic"):
        consumers.subscribe("ehr.outbound.fhir", processor=None)  # type: ignore[arg-type]
