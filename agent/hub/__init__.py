"""The city's side: hub workers (ingest into PostgreSQL or SQLite, gap repair) and the fleet view."""
