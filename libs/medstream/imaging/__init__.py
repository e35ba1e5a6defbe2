"""Chest-radiograph imaging: phantoms, DICOM preprocessing, the CNN."""
