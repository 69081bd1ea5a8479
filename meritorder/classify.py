"""The bridge from `classifiers` to the policy: the engine's signals as the policy's view."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace

from meritorder import telemetry
from meritorder.policy import Classified
from meritorder.request import RequestView, path_name

if TYPE_CHECKING:
    from classifiers.cache import CacheStats
    from classifiers.engine import SignalEngine
    from classifiers.signals import PiiEntity
    from meritorder.config import RoutingConfig

log = structlog.get_logger("meritorder.classify")

# `meritorder serve`'s signal cache: ~4k rows (within the engine's 32 MiB) for 10 minutes each.
SIGNAL_CACHE_ENTRIES = 4096
SIGNAL_CACHE_TTL_S = 600.0


class EngineClassifier:
    """Runs the fused ONNX model (micro-batched, off the event loop) for the router."""

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine
        self.attack_threshold = engine.spec.thresholds.prompt_attack
        self.harmful_threshold = engine.spec.thresholds.harmful
        self._counted: CacheStats | None = None  # the cache's counters as last exported
        self._opinions = (0, 0, 0)  # the second opinion's (kept, dropped, unchecked) exported

    @property
    def queued_rows(self) -> int:
        return self.engine.queued_rows

    def estimate_wait_s(self, request: RequestView) -> float | None:
        """The seconds `request` would wait for its signals if queued now; None when there are
        no grounds to refuse it: the engine has measured no batch yet, or nothing is ahead of it
        (an idle classifier takes it at once, and its batch measures the cost of a row anew, so
        an estimate that ran high cannot refuse requests forever), or it cannot read the request
        (classifying it will say why)."""
        from classifiers.engine import InvalidInput

        if not self.engine.rows_waiting:
            return None
        try:
            rows = self.engine.rows_for(request.classifier_messages())
        except InvalidInput:
            return None
        return self.engine.estimate_wait_s(rows)

    async def read_share(self, request: RequestView) -> float | None:
        """The share of `request` the attack head would read (1.0: whole), from planning alone
        (no forward pass), in a worker thread; None when the engine cannot read the request
        (classifying it will say why)."""
        from classifiers.engine import InvalidInput

        messages = request.classifier_messages()
        if self.engine.fits_attack_budget(messages):
            return 1.0  # most requests: no thread hop on the hot path
        try:
            return await asyncio.to_thread(self.engine.read_share, messages)
        except InvalidInput:
            return None

    async def classify(self, request: RequestView) -> Classified:
        values = _argument_values(request)
        main = self.engine.classify_messages(request.classifier_messages(), request.field_texts())
        if values:  # the names and addresses in a tool call's argument values, read as text
            signals, read = await asyncio.gather(
                main,
                self.engine.classify_messages([{"role": "user", "content": t} for _, t in values]),
            )
            signals = replace(signals, pii=(*signals.pii, *_argument_pii(values, read.pii)))
        else:
            signals = await main
        if signals.timing is not None:
            telemetry.record_batch(signals.timing)
        if self.engine.second_opinion is not None:
            self._count_opinions()
        if self.engine.row_cache is not None:
            self._count_cache()
            trace.get_current_span().set_attribute(
                "meritorder.classifier.cached_rows", signals.cached_rows
            )
        return Classified(
            domain=signals.domain.label,
            domain_scores=signals.domain.scores,
            prompt_attack=signals.prompt_attack.score,
            attack_threshold=self.attack_threshold,
            difficulty=signals.difficulty.score,
            pii=_in_tool_specs_as_fields(request, signals.pii),
            tokens=signals.tokens,
            harmful=signals.harmful.score if signals.harmful is not None else None,
            harmful_threshold=self.harmful_threshold,
            domain_confidence=signals.domain.confidence,
            attack_read=signals.prompt_attack.read,
            attack_by=signals.prompt_attack.by,
        )

    def _count_opinions(self) -> None:
        """Advance the second opinion's counter by its outcomes since last time (on the event
        loop only, as `_count_cache`)."""
        assert self.engine.second_opinion is not None
        stats = self.engine.second_opinion.stats
        now = (stats.checked - stats.dropped, stats.dropped, stats.unchecked)
        outcomes = ("kept", "dropped", "unchecked")
        for outcome, value, seen in zip(outcomes, now, self._opinions, strict=True):
            if value > seen:
                telemetry.METRICS.pii_second_opinion.labels(outcome=outcome).inc(value - seen)
        self._opinions = now

    def _count_cache(self) -> None:
        """Advance the Prometheus counters by what the engine's cache counted since last time
        (called on the event loop only, so no two calls interleave)."""
        stats = self.engine.cache_stats
        seen = self._counted
        telemetry.METRICS.signal_cache_hits.inc(stats.hits - (seen.hits if seen else 0))
        telemetry.METRICS.signal_cache_misses.inc(stats.misses - (seen.misses if seen else 0))
        telemetry.METRICS.signal_cache_errors.inc(stats.errors - (seen.errors if seen else 0))
        self._counted = stats

    def check_speed(self, routing: RoutingConfig, *, required: bool) -> float:
        """Time the model on this machine (`SignalEngine.measure_speed`, which also warms it
        up) and say what the policy's time budgets cover at that speed, before the first request
        finds out: a warning naming the fixes where the costliest request would not fit
        `required_timeout_ms` and the policy has `required` signals (such requests get
        `routing.on_unavailable`), and one where `decision_timeout_ms` does not cover one full
        row (routing-only signals then fall back for most requests). Returns the row tokens a
        second, also exported as a gauge."""
        rate = self.engine.measure_speed()
        telemetry.METRICS.classifier_speed.set(rate)
        worst = self.engine.max_request_row_tokens
        covers = {
            "required_covers_row_tokens": round(rate * routing.required_timeout_ms / 1000),
            "decision_covers_row_tokens": round(rate * routing.decision_timeout_ms / 1000),
        }
        facts = {
            "row_tokens_per_s": round(rate),
            "costliest_request_row_tokens": worst,
            "costliest_request_s": round(worst / rate, 2),
            **covers,
        }
        warned = False
        if required and covers["required_covers_row_tokens"] < worst:
            warned = True
            log.warning(
                "on this CPU the classifier cannot read the costliest requests within "
                "routing.required_timeout_ms: those past it get routing.on_unavailable; use "
                "--classifier-profile fast, raise routing.required_timeout_ms (and Envoy's "
                "ext_proc message_timeout above it), or give the router faster cores",
                **facts,
            )
        if covers["decision_covers_row_tokens"] < self.engine.max_length:
            warned = True
            log.warning(
                "on this CPU routing.decision_timeout_ms does not cover one full row: requests "
                "longer than decision_covers_row_tokens are decided without the classifier's "
                "routing signals (counted as fallbacks); use --classifier-profile fast, raise "
                "routing.decision_timeout_ms, or give the router faster cores",
                **facts,
            )
        if not warned:
            log.info("classifier speed", **facts)
        return rate

    def close(self) -> None:
        from classifiers.cache_redis import RedisRowCache

        self.engine.close()
        if isinstance(self.engine.row_cache, RedisRowCache):
            self.engine.row_cache.close()


def _in_tool_specs_as_fields(
    request: RequestView, found: tuple[PiiEntity, ...]
) -> tuple[PiiEntity, ...]:
    """The PII found, with what lies in a tool description or a tool call's arguments (read as
    tool turns) reported as the field it is, as before they were read: the patterns' findings
    keep the request private (neither is redacted), the model's are dropped (it reads prose
    about code and parameters, `screen cursor`, and JSON keys as names)."""
    out = []
    for entity in found:
        path = request.tool_spec_path(entity.message) if entity.message is not None else None
        if path is None:
            out.append(entity)
        elif entity.source != "model":
            out.append(replace(entity, message=None, field=path))
    return tuple(out)


def _argument_values(request: RequestView) -> list[tuple[str, str]]:
    """(field path, text) per tool call in the conversation: its arguments' string values, one a
    line (a JSON text's values; a text that is no JSON as it is). The model reads them as text
    of their own: read as the tool turn's JSON, it tags lower-case phrases as names."""
    out = []
    size = 0
    for path, text in request.tool_specs:
        if path[0] not in ("messages", "input"):
            continue  # a tool's own description: prose about parameters, not the client's data
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            parsed = text
        values = [v for v in _strings_in(parsed) if any(c.isalpha() for c in v)]
        joined = "\n".join(values)
        if joined and size + len(joined) <= ARGUMENT_VALUES_MAX_CHARS:
            out.append((path_name(path), joined))
            size += len(joined)
    return out


ARGUMENT_VALUES_MAX_CHARS = 32_768  # of tool-call argument values the model reads a request


def _strings_in(value: object) -> list[str]:
    """Every string under `value`, in order; iterative, as a client may nest arguments as deep
    as the JSON parser allows."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


def _argument_pii(values: list[tuple[str, str]], found: tuple[PiiEntity, ...]) -> list[PiiEntity]:
    """The model's names and addresses in the argument values (`_argument_values`), as the
    argument fields they lie in (a field is not redacted: the request stays private)."""
    return [
        replace(entity, message=None, field=values[entity.message][0])
        for entity in found
        if entity.source == "model" and entity.message is not None
    ]


def load_classifier(
    model_dir: Path | None = None,
    *,
    force_cpu: bool = False,
    cache_entries: int = 0,
    cache_ttl_s: float = 0,
    cache_url: str | None = None,
    segments: bool = False,
    pii_second_opinion: bool = False,
) -> EngineClassifier | None:
    """The classifier, or None (with the reason logged) when its model cannot be loaded; with
    `cache_entries` and `cache_ttl_s` both above 0 it keeps rows already encoded (signal cache),
    in this process or, with `cache_url`, in that Redis, shared by every router on it; with
    `segments`, the model's segment head scores pasted lines for planted instructions; with
    `pii_second_opinion`, a second tagger must agree before a model name or address stands."""
    from classifiers.cache_redis import RedisRowCache
    from classifiers.engine import SignalEngine
    from classifiers.spec import SpecError

    shared = None
    if cache_url is not None and cache_entries and cache_ttl_s:
        shared = RedisRowCache(cache_url, cache_ttl_s)
    try:
        engine = SignalEngine.load(
            model_dir,
            force_cpu=force_cpu,
            cache_entries=cache_entries,
            cache_ttl_s=cache_ttl_s,
            row_cache=shared,
            segments=segments,
            pii_second_opinion=pii_second_opinion,
        )
    except (OSError, SpecError, ValueError) as error:
        log.warning("classifier unavailable; classifier signals will not fire", error=str(error))
        if shared is not None:
            shared.close()
        return None
    cache = "off" if engine.row_cache is None else "redis" if shared else "in process"
    log.info(
        "classifier loaded",
        provider=engine.provider,
        version=engine.spec.version,
        signal_cache=cache,
        harm_head=engine.spec.has_harm,  # without it, `harmful` signals are unavailable
        segment_head=engine.segment_head is not None,
        pii_second_opinion=engine.second_opinion is not None,
        calibrated=sorted(engine.spec.temperatures),
    )
    return EngineClassifier(engine)
