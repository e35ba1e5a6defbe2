"""The notes worker: de-identified reports in, CheXpert labels and word attributions out."""
