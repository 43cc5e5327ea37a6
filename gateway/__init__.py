"""Ingest half of Anxin: MQTT/HTTP in, device profiles, canonical readings and events out."""
