"""Model packages, the model registry and shared evaluation metrics."""
