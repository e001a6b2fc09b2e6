"""`make demo`: the local stack with a believable partner in it and a collections policy whose
days last a minute (`python -m demo` seeds it; scripts/dev.py --demo runs both)."""
