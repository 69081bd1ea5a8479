"""Signal config types, one module each, and the one registry the config and the policy read.

To add a signal type: write `meritorder/signals/<type>.py` with a `SignalConfigBase` (or
`ClassifierSignalConfig`) subclass that declares its `type` tag and implements `score`, then add
it to `SIGNAL_TYPES` below. The registry makes the config's discriminated union (an unknown
`type` is a load-time error listing the known ones), the field lists of its error hints, and
whether a policy needs the classifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union, get_args

from pydantic import Discriminator, Tag

from meritorder.signals.base import ClassifierSignalConfig, SignalConfigBase
from meritorder.signals.difficulty import DifficultySignalConfig
from meritorder.signals.domain import DomainSignalConfig
from meritorder.signals.domain_confidence import DomainConfidenceSignalConfig
from meritorder.signals.harmful import HarmfulSignalConfig
from meritorder.signals.header import HeaderSignalConfig
from meritorder.signals.keyword import KeywordSignalConfig
from meritorder.signals.pii import PiiSignalConfig
from meritorder.signals.prompt_attack import PromptAttackSignalConfig
from meritorder.signals.tokens import TokensSignalConfig
from meritorder.signals.tools import ToolsSignalConfig
from meritorder.signals.turns import TurnsSignalConfig

SIGNAL_TYPES: tuple[type[SignalConfigBase], ...] = (
    KeywordSignalConfig,
    DomainSignalConfig,
    PromptAttackSignalConfig,
    HarmfulSignalConfig,
    PiiSignalConfig,
    DifficultySignalConfig,
    DomainConfidenceSignalConfig,
    TokensSignalConfig,
    TurnsSignalConfig,
    ToolsSignalConfig,
    HeaderSignalConfig,
)

DEFAULT_TYPE = "keyword"  # a signal without `type` is a keyword signal


def type_tag(cls: type[SignalConfigBase]) -> str:
    """The `type:` value a policy file uses for a signal config type (its Literal's one value)."""
    (tag,) = get_args(cls.model_fields["type"].annotation)
    return str(tag)


BY_TAG: dict[str, type[SignalConfigBase]] = {type_tag(t): t for t in SIGNAL_TYPES}
CLASSIFIER_TYPES: frozenset[str] = frozenset(tag for tag, t in BY_TAG.items() if t.needs_classifier)


def _tag_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", DEFAULT_TYPE))
    return str(getattr(value, "type", ""))


if TYPE_CHECKING:
    SignalConfig = SignalConfigBase
else:
    # The config's union, one tagged branch per registered type; `keyword` is the default.
    SignalConfig = Annotated[
        Union[tuple(Annotated[t, Tag(tag)] for tag, t in BY_TAG.items())],  # noqa: UP007
        Discriminator(_tag_of),
    ]

__all__ = [
    "BY_TAG",
    "CLASSIFIER_TYPES",
    "SIGNAL_TYPES",
    "ClassifierSignalConfig",
    "DifficultySignalConfig",
    "DomainConfidenceSignalConfig",
    "DomainSignalConfig",
    "HarmfulSignalConfig",
    "HeaderSignalConfig",
    "KeywordSignalConfig",
    "PiiSignalConfig",
    "PromptAttackSignalConfig",
    "SignalConfig",
    "SignalConfigBase",
    "TokensSignalConfig",
    "ToolsSignalConfig",
    "TurnsSignalConfig",
    "type_tag",
]
