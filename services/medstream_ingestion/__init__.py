"""The ingestion service: EHR messages in, validated identified records out."""
