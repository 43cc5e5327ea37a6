"""Anxin (安心): safety-monitoring gateway for childcare institutions."""

__version__ = "0.1.0"
