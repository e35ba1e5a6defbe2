"""The synthetic hospital: a feed to replay, malformed input, and the outcome ledger."""
