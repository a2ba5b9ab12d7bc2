"""Consent decisions: pure functions over plain values (no network, no images)."""
