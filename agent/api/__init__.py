"""The local HTTP API and status page for technicians."""
