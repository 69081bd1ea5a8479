"""The matched decision's `pii` step: on PII found by the policy's pii signals, block the
request, redact the spans (keeping it private when some cannot be masked), or keep it private."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Note
from meritorder.policy.observation import PiiFinding
from meritorder.signals import PiiSignalConfig


class PiiFilter:
    name: ClassVar[str] = "pii"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        step = ctx.rule.pii if ctx.rule is not None else None
        found = acted_on_pii(ctx) if step is not None else []
        if not found:
            return survivors
        types = tuple(sorted({f.type for f in found}))
        if step == "block":
            named = f" ({','.join(types)})" if ctx.config.routing.reason_detail == "full" else ""
            return Block(
                403,
                f"This request contains personal data{named}; it is not forwarded.",
                code="pii_blocked",
                notes=(Note("pii", ",".join(types), detected=True),),
            )
        if step == "redact":
            # Only message text can be masked; PII in any other field (tool arguments, schemas,
            # URLs, names...) stays in the body, so the request stays inside the boundary.
            redactable = tuple(f for f in found if f.field is None)
            survivors = replace(survivors, steps=replace(survivors.steps, redact=redactable))
            if len(redactable) == len(found):
                return survivors
        return ctx.private_only(survivors, self.name, "pii", detected=types)


def acted_on_pii(ctx: Context) -> list[PiiFinding]:
    """PII found by the policy's pii signals (what a decision's `pii` step acts on), each once."""
    if ctx.obs.classified is None:
        return []
    found: dict[int, PiiFinding] = {}
    for signal in ctx.config.signals:
        if isinstance(signal, PiiSignalConfig):
            for f in signal.matching(ctx.obs.classified.pii):
                found[id(f)] = f
    return list(found.values())
