"""The policy: a pure function of (observation, pool state, config) to a `Decision` with its
explanation. No I/O here: `meritorder explain`, `meritorder route`, the evaluation and the ext_proc
path all call `decide`, and tests can run it by the thousand.

Order of a decision (meritorder/policy/pipeline.py):
  1. score every signal (each type scores itself, meritorder/signals/); the decisions whose
     rule holds are `matched`, the first one by priority wins (rules.py);
  2. its action: block, or its `route` list as the candidates (explicit requests: the named
     model; no match: the default model);
  3. the filters, in order (filters/): the API the request came on, the decision's PII step
     (block / redact / private), the privacy boundaries, the tenant's budget (fits, else step
     down, or 429), upstream health; each returns the survivors with a `Rejection` for every
     model it took out, or a block;
  4. the session's model, if it survived (meritorder/sessions.py); else a decision that learns
     (`learn:`, learned.py) has the bandit pick among the healthy survivors that fit the
     budget; else the decision's picker (`pick:`, pickers/) chooses: first by default.
The result is `Routed` or `Blocked` (decision.py); `reason` renders its structured explanation.
"""

from __future__ import annotations

from meritorder.policy.context import Block, Context, Filter, Picker, Survivors
from meritorder.policy.decision import (
    Blocked,
    Decision,
    Explained,
    Note,
    Rejection,
    Routed,
    Steps,
    blocked,
    routed,
)
from meritorder.policy.learned import learn_context, learning_contexts
from meritorder.policy.observation import Classified, Observation, PiiFinding, PoolState
from meritorder.policy.pipeline import decide
from meritorder.policy.rules import evaluate_signals, holds, is_virtual

__all__ = [
    "Block",
    "Blocked",
    "Classified",
    "Context",
    "Decision",
    "Explained",
    "Filter",
    "Note",
    "Observation",
    "Picker",
    "PiiFinding",
    "PoolState",
    "Rejection",
    "Routed",
    "Steps",
    "Survivors",
    "blocked",
    "decide",
    "evaluate_signals",
    "holds",
    "is_virtual",
    "learn_context",
    "learning_contexts",
    "routed",
]
