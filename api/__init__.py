"""The HTTP intake service (FastAPI): signed webhooks of the billing system and case intake."""
