"""The candidate filters, in the order a decision applies them. To add one: a new module here
with a `Filter` (a `name` and `apply`), and one line below, where it belongs in the order."""

from __future__ import annotations

from meritorder.policy.context import Filter
from meritorder.policy.filters.api import ApiFilter
from meritorder.policy.filters.boundaries import BoundariesFilter
from meritorder.policy.filters.budget import BudgetFilter
from meritorder.policy.filters.health import HealthFilter
from meritorder.policy.filters.load import LoadFilter
from meritorder.policy.filters.pii import PiiFilter

FILTERS: tuple[Filter, ...] = (
    ApiFilter(),  # first: a model that cannot serve the API is never a candidate
    PiiFilter(),  # the decision's own PII step
    BoundariesFilter(),
    BudgetFilter(),  # checks the model the picker would choose among the healthy ones
    HealthFilter(),
    LoadFilter(),  # last: it only removes, so no boundary or budget is undone to spare a model
)
