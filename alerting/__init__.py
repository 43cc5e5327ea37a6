"""Alerting: incidents from events, jurisdiction routing, escalation until someone acknowledges."""
