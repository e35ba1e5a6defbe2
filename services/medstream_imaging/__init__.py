"""The imaging worker: de-identified chest films in, CheXpert probabilities and heatmaps out."""
