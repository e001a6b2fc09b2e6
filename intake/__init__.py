"""Billing failures from files: read, validated, reported with bounded concurrency."""
