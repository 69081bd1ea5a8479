"""The pickers by the name a decision's `pick:` uses. To add one: a new module here with a
`Picker` function, and one line below."""

from __future__ import annotations

from meritorder.policy.context import Picker
from meritorder.policy.pickers.cheapest import pick_cheapest
from meritorder.policy.pickers.first import pick_first
from meritorder.policy.pickers.headroom import pick_headroom
from meritorder.policy.pickers.scored import pick_scored

PICKERS: dict[str, Picker] = {
    "first": pick_first,
    "cheapest": pick_cheapest,
    "scored": pick_scored,
    "headroom": pick_headroom,
}
