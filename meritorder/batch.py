"""Offline routing: `meritorder route` (JSONL in, decisions out) and `meritorder explain`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from meritorder.endpoints import parse
from meritorder.errors import RequestError
from meritorder.policy import Blocked, Classified, Decision, Routed
from meritorder.request import RequestView
from meritorder.router import Router
from meritorder.tenant import UNVERIFIED

CHUNK = 64  # lines routed concurrently, so the classifier can batch them


def request_from(line: Mapping[str, Any], router: Router) -> RequestView:
    """A chat request from a `{"text"}` or `{"messages"}` input line (the classify format)."""
    messages = line.get("messages")
    if messages is None:
        text = line.get("text")
        if not isinstance(text, str):
            raise ValueError("each line needs a string 'text' or a 'messages' array")
        messages = [{"role": "user", "content": text}]
    model = line.get("model", router.config.virtual_models[0])
    if not isinstance(model, str):
        raise ValueError(f"'model' must be a string, not {type(model).__name__}")
    body = json.dumps({"model": model, "messages": messages}).encode()
    return parse("chat", body, max_bytes=router.config.limits.max_body_bytes)


def signals_json(decision: Decision, classified: Classified | None) -> dict[str, Any]:
    """The signals part of a routed line: fired policy signals and the classifier's raw outputs."""
    out: dict[str, Any] = {"fired": dict(decision.fired)}
    if classified is not None:
        out.update(classified.fields())
    return out


def _headers(value: object) -> dict[str, str]:
    """The line's request headers, names lowercased as Envoy sends them."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("'headers' must be an object of header name to string value")
    return {str(k).lower(): v for k, v in value.items()}


async def route_one(router: Router, line: Mapping[str, Any]) -> dict[str, Any]:
    headers = _headers(line.get("headers"))
    request = request_from(line, router)
    obs = await router.observe(request, headers)
    decision = await router.route(request, headers, observed=obs)
    return {
        "id": line.get("id"),
        "decision": decision.rule,
        "model": decision.chosen.name if decision.chosen else None,
        "action": decision.action,
        "status": decision.status if isinstance(decision, Blocked) else 200,
        "reason": decision.reason,
        "signals": signals_json(decision, obs.classified),
    }


async def route_lines(
    router: Router,
    lines: Iterable[str],
    output: TextIO,
    *,
    stop_on_error: bool = False,
    on_bad: Callable[[int, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Route every JSONL line; a bad line yields `{"id", "line", "error"}` (its line number) and
    the rest go on, or, with `stop_on_error`, nothing after it is written. `on_bad` gets
    (line number, error) of each bad line, `progress` the count of lines each chunk finished.
    Returns the number of bad lines."""
    bad = 0
    chunk: list[tuple[int, str]] = []

    async def flush() -> bool:
        nonlocal bad
        results = await asyncio.gather(*(_route_text(router, text) for _, text in chunk))
        for (number, _), result in zip(chunk, results, strict=True):
            if "error" in result:
                bad += 1
                result = {"id": result["id"], "line": number, "error": result["error"]}
                if on_bad is not None:
                    on_bad(number, result["error"])
            output.write(json.dumps(result, ensure_ascii=False) + "\n")
            if bad and stop_on_error:
                break
        output.flush()
        if progress is not None:
            progress(len(chunk))
        chunk.clear()
        return not (bad and stop_on_error)

    for number, text in enumerate(lines, 1):
        if text.strip():
            chunk.append((number, text))
        if len(chunk) >= CHUNK and not await flush():
            return bad
    if chunk:
        await flush()
    return bad


async def _route_text(router: Router, text: str) -> dict[str, Any]:
    try:
        line = json.loads(text)
    except json.JSONDecodeError as exc:
        return {"id": None, "error": f"invalid JSON at column {exc.colno}: {exc.msg}"}
    if not isinstance(line, dict):
        return {"id": None, "error": "each line must be a JSON object"}
    try:
        return await route_one(router, line)
    except (RequestError, ValueError) as exc:
        return {"id": line.get("id"), "error": str(exc)}


async def explain(router: Router, text: str, headers: Mapping[str, str], model: str | None) -> str:
    """A readable account of one decision: every signal, the rules, what was rejected and why."""
    line = {"text": text, **({"model": model} if model else {})}
    request = request_from(line, router)
    config = router.config
    if router.reads_load:  # the pool as a live router would see it now: read every endpoint once
        await router.pool.refresh(config.models)
    obs = await router.observe(request, headers)
    decision = await router.route(request, headers, observed=obs)
    out = [f"request: model={request.model!r}, ~{obs.tokens} tokens"]
    if obs.classified is not None:
        out += _classifier_lines(obs.classified)
    elif config.uses_classifier():
        out.append("classifier: unavailable (classifier signals cannot fire)")
    width = max(
        [len(s.name) for s in config.signals] + [len(d.name) for d in config.decisions] + [8]
    )
    out.append("signals:")
    types = max([len(s.type) for s in config.signals] + [13])
    for signal in config.signals:
        score = signal.score(obs)
        state = "-" if score is None else f"fired {score:.3f}"
        out.append(f"  {signal.name:<{width}} {signal.type:<{types}}  {state}")
    out.append("decisions (by priority):")
    for rule in config.ordered_decisions():
        mark = (
            "WON"
            if rule.name == decision.rule
            else ("matched" if rule.name in decision.matched else "-")
        )
        out.append(f"  {rule.priority:>5}  {rule.name:<{width}} {mark}")
    if isinstance(decision, Blocked):
        out.append(f"result: BLOCK {decision.status} ({decision.code}): {decision.message}")
    else:
        out.append(
            f"result: route to {decision.model.name} ({decision.model.boundary}, "
            f"upstream {decision.model.upstream_model}) via decision {decision.rule!r}"
        )
        out.append(f"estimated cost: {decision.cost:.6f}")
    if decision.tenant is not None and config.budgets is not None:
        limit = config.budgets.limit_for(decision.tenant)
        who = (
            "no verified tenant, the shared unverified"
            if decision.tenant == UNVERIFIED
            else f"tenant {decision.tenant},"
        )
        out.append(
            f"budget: {who} limit {'unlimited' if limit is None else f'{limit:g}'} per "
            f"{config.budgets.window_s} s (tenant header {config.budgets.header})"
        )
    if isinstance(decision, Routed) and decision.pick is not None:  # it learned: the estimates
        p = decision.pick
        out.append(f"learned ({p.context}): {p.why}")
        if p.level is not None:  # the relative model: each mean is the level plus an offset
            out.append(f"  level {p.level:.3f} (relative model: each mean is level + offset)")
        if p.resets:  # the change detector shrank this context's evidence
            out.append(
                f"  reset {p.resets}x by the change detector, the last "
                f"{p.since_reset:.0f} observations ago"
            )
        for r in p.table:
            win = " <-" if r.model == p.model else ""
            out.append(
                f"  {r.model:<24} mean {r.mean:.3f}  n {r.count:7.1f}  sample {r.sample:.3f}  "
                f"cost {r.cost:g}{win}"
            )
    pool = router.pool_state()
    if pool:
        out.append(f"pool (read now; stale past {config.routing.pool_stale_s:g} s):")
        for m in config.models:
            load = pool.get(m.name)
            if load is not None and (m.metrics_url or load.in_flight):
                seen = "unreachable" if m.metrics_url and not load.reachable else load.render()
                out.append(f"  {m.name:<24} {seen}")
    for rejected in decision.rejected:
        out.append(f"rejected: {rejected.render()} (by the {rejected.filter} filter)")
    for note in decision.notes:
        out.append(f"note: {note.render()}")
    steps = decision.steps if isinstance(decision, Routed) else None
    if steps and (
        steps.system_prompt or steps.reasoning or steps.max_tokens or steps.headers or steps.redact
    ):
        out.append(
            f"steps: system_prompt={bool(steps.system_prompt)} reasoning={steps.reasoning} "
            f"max_tokens={steps.max_tokens} headers={dict(steps.headers)} "
            f"redact={len(steps.redact)}"
        )
    out.append(f"x-meritorder-reason: {decision.reason}")
    return "\n".join(out)


def _classifier_lines(classified: Classified) -> list[str]:
    """The classifier's outputs: top domains and the top one's confidence, every other scalar
    (a score with its threshold), PII spans (never values)."""
    top = sorted(classified.domain_scores.items(), key=lambda kv: -kv[1])[:3]
    domains = ", ".join(f"{k} {v:.2f}" for k, v in top)
    lines = ["classifier:", f"  domain        {domains} (confidence {classified.confidence:.2f})"]
    thresholds = {
        "prompt_attack": classified.attack_threshold,
        "harmful": classified.harmful_threshold,
    }
    for name, value in classified.fields().items():
        if name.startswith(("domain", "pii")) or name == "tokens":
            continue  # shown above, below, and on the request line
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        threshold = thresholds.get(name)
        if threshold is not None:
            text += f" (threshold {threshold:.3f})"
        lines.append(f"  {name:<13} {text}")
    if classified.harmful is None:
        lines.append("  harmful       unavailable (the model has no harm head)")
    found = ", ".join(f"{f.type}@{f.start}-{f.end} {f.score:.2f}" for f in classified.pii)
    return [*lines, "  pii           " + (found or "none")]
