"""The gateway service: MLLP, DICOM DIMSE, DICOMweb and FHIR REST listeners."""
