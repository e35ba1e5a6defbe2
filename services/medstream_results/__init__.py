"""The results service: model results in, FHIR R4 re-linked to the EHR patient out."""
