"""How hard the rules' state-machine tests look: `make test` runs RULES_EXAMPLES random weeks of
RULES_STEPS steps per machine (1,000 × 40: every invariant checked some 40,000 times, in seconds,
as the rules need no server); the nightly-size run sets RULES_EXAMPLES=50000 (docs/testing.md)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

RULES_EXAMPLES = int(os.environ.get("RULES_EXAMPLES", "300"))
RULES_STEPS = int(os.environ.get("RULES_STEPS", "40"))

# one setting for every rules machine: no deadline (a busy machine is not a failure), no database
# of examples kept between runs beyond Hypothesis's own
RULES = settings(
    max_examples=RULES_EXAMPLES,
    stateful_step_count=RULES_STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
