"""The web-facing applications."""
