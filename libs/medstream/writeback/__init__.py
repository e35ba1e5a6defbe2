"""The EHR boundary: model results become FHIR R4 resources about the real patient,
stored once in PostgreSQL and published to ``ehr.outbound.fhir``."""
