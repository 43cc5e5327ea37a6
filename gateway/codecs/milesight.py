"""Milesight LoRaWAN payload codecs (placeholder; filled in by the Milesight work)."""
