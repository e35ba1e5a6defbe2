"""The audit service: audit events in, a hash-chained FHIR AuditEvent trail out."""
