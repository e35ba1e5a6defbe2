"""The deid service: identified records in, PHI-free events out."""
