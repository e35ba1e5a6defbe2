from medstream.topics import ALL_TOPICS, BY_NAME


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
