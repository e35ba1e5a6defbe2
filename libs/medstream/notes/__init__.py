"""The notes domain: CheXpert labels from radiology text."""
