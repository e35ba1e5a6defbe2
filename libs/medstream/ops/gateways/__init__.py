"""The gateways: the hospital's own protocols in, each acknowledging only what Kafka
holds (docs/gateways.md).

- ``mllp``: HL7 v2 over MLLP, with ACKs that echo MSH-10.
- ``dimse``: a DICOM C-STORE and C-ECHO SCP (pynetdicom).
- ``http``: DICOMweb STOW-RS and a FHIR REST API (FastAPI): inbound posts, and reads of
  the stored results behind SMART Backend Services tokens (``smart``).

Every listener hands what it received to one ``EdgePublisher`` (``edge``), which
checks it as ingestion will, publishes it with acks=all and audits the outcome before
the protocol's acknowledgement is sent.
"""
