"""The agents' web workspace (`python -m web`): an adapter over the service layer."""
