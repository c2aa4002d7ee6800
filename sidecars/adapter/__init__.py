"""adapter: serves /health from the app's /metrics, and the reverse."""
