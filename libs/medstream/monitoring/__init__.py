"""The monitoring domain: NEWS2, the physiology simulator and the deterioration model."""
