"""The privacy boundaries: PII they name (and text the router cannot read) never reaches an
external model, unless it was redacted away; such requests are rerouted private, or blocked."""

from __future__ import annotations

from typing import ClassVar

from meritorder.config import BoundaryConfig, ModelConfig
from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Note, Steps
from meritorder.policy.observation import Observation, PiiFinding
from meritorder.signals.pii import matching_pii


class BoundariesFilter:
    name: ClassVar[str] = "boundaries"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        redacted = {id(f) for f in survivors.steps.redact}
        unread = ctx.obs.request.unreadable
        for boundary in ctx.config.boundaries:
            held = [f for f in boundary_pii(boundary, ctx.obs) if id(f) not in redacted]
            private = [m.boundary == "private" for m in survivors.models]
            if not (held or unread) or all(private):
                continue
            # Text the router cannot read (token ids) may hold anything: it stays inside too.
            types = {f.type for f in held} | ({"UNREADABLE"} if unread else set())
            if boundary.action == "block" and not any(private):
                return Block(
                    boundary.status,
                    boundary.message,
                    code="boundary_blocked",
                    notes=(Note("boundary", boundary.name, detected=True),),
                )
            survivors = ctx.private_only(
                survivors,
                self.name,
                "boundary",
                boundary=boundary.name,
                detected=tuple(sorted(types)),
            )
        return survivors


def boundary_pii(boundary: BoundaryConfig, obs: Observation) -> list[PiiFinding]:
    if obs.classified is None:
        return []
    return matching_pii(obs.classified.pii, boundary.pii_types, boundary.min_score)


def allowed_models(ctx: Context, steps: Steps) -> list[ModelConfig]:
    """Models no boundary forbids for this request (given what `steps` redacts)."""
    config, obs = ctx.config, ctx.obs
    redacted = {id(f) for f in steps.redact}
    held = any(id(f) not in redacted for b in config.boundaries for f in boundary_pii(b, obs))
    held = held or bool(config.boundaries and obs.request.unreadable)
    return [m for m in config.models if not (held and m.boundary == "external")]
