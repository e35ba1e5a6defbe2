"""MedStream: clinical AI models as a service on a hospital's EHR event stream."""

__version__ = "0.1.0"
