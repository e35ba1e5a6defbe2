"""The monitoring worker: de-identified vital signs in, deterioration risk out."""
