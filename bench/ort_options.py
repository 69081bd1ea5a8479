#!/usr/bin/env python3
"""onnxruntime's cheap wins, before and after, on the classifier's graph at 128 tokens.

    python bench/ort_options.py [--quick] [--model-dir DIR] [--fp32 PATH] [--threads 2]
    .venv-train/bin/python bench/ort_options.py --export-fp32 PATH   # an fp32 graph to quantize
    .venv-train/bin/python bench/ort_options.py --to-fp16 FP32 OUT   # a fused fp16 graph, for a GPU

Measures the bare `session.run` of the graph in `--model-dir` (default: the shipped
classifiers/models/signals.int8.onnx) at batch 1 and batch 8, each option changed alone from
the router's own session options (`classifiers.session.session_options`, the baseline row):

  1. graph optimization level: disabled, basic, extended, all;
  2. intra-op threads (1, 2), and idle pool threads that sleep at once or spin as long as
     onnxruntime's default, against the router's bounded spin;
  3. execution mode: sequential (one inter-op thread) vs parallel (two);
  4. I/O binding (`session.io_binding()`, inputs bound once, outputs preallocated) vs `run`;
  5. with `--fp32`: that fp32 graph vs its dynamic int8 (what training ships: per-channel QInt8
     weights) vs static QDQ int8 (`quantize_static`, calibrated on training texts), with each
     int8 graph's max and mean absolute difference from fp32 on every output, on held-out
     texts: a quantization that moves the outputs a lot is no win, however fast.

The fp32 graph: `classifiers/training/out/` of a training run has `signals.fp32.onnx`; without
one, `--export-fp32 PATH` (in the training venv, which has torch) exports `SignalModel` from the
base weights with untrained heads: right for speed, and the encoder's quantization error is the
real one, but its head outputs sit near uniform, so the differences understate a trained model's.
Figures: bench/results/ort_options.{json,md} (`--quick`: bench/results/tmp/).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / "classifiers" / "training" / "data"
MODELS = REPO / "classifiers" / "models"
RESULTS = REPO / "bench" / "results"
TOKENS = 128
BATCHES = (1, 8)
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("domain_probs", "attack_prob", "difficulty_prob", "pii_probs")
SEED = 16


# --- texts -----------------------------------------------------------------------------------


def _rows() -> dict[str, str]:
    """Every training-data row's text by id (domain, guard, PII, generated)."""
    texts: dict[str, str] = {}
    for path in sorted(DATA.glob("*/*.jsonl")):
        if path.parent.name == "routing":
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            row = json.loads(line)
            if isinstance(row.get("text"), str) and row["text"].strip():
                texts[row["id"]] = row["text"]
    return texts


def split_texts(split: str, count: int) -> list[str]:
    """`count` texts of one split (train or dev) of every task, interleaved, seeded."""
    rows = _rows()
    per_task = []
    for name in ("domain_rows", "prompt_attack", "pii"):
        ids = json.loads((DATA / "splits" / f"{name}.json").read_text())[split]
        chosen = [rows[i] for i in ids if i in rows]
        random.Random(f"{SEED}-{name}-{split}").shuffle(chosen)
        per_task.append(chosen)
    mixed = [text for group in zip(*per_task, strict=False) for text in group]
    return mixed[:count]


class Encoder:
    """The shipped tokenizer, cut to the graph's input: [CLS] ids [SEP], at most `length`."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def ids(self, text: str, length: int) -> np.ndarray:
        pieces = self.tokenizer.encode(text).ids  # with [CLS] ... [SEP]
        if len(pieces) > length:
            pieces = [*pieces[: length - 1], pieces[-1]]
        return np.array(pieces, dtype=np.int64)

    def batch(self, texts: list[str], length: int) -> dict[str, np.ndarray]:
        from classifiers.windows import padded

        ids, mask = padded([self.ids(t, length) for t in texts])
        return {INPUTS[0]: ids, INPUTS[1]: mask}


def full_length_feed(encoder: Encoder, batch: int) -> dict[str, np.ndarray]:
    """`batch` real texts of at least TOKENS tokens, each cut to exactly TOKENS (no padding)."""
    long = [t for t in split_texts("train", 4000) if len(encoder.ids(t, TOKENS + 1)) > TOKENS]
    if len(long) < batch:  # short data: repeat the texts rather than pad
        long = (long * batch)[:batch]
    return encoder.batch(long[:batch], TOKENS)


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One row of the table: what differs from the baseline, and how to build its session."""

    name: str
    option: str  # the group it belongs to (rows of a group are compared with each other)
    threads: int | None = None
    level: str = "all"
    spin: str = "router"  # "router" (the bounded spin), "off" (sleep at once), "default"
    parallel: bool = False
    io_binding: bool = False
    model: str = "shipped"  # a key of the graphs measured
    notes: dict[str, Any] = field(default_factory=dict)


LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def spin_options(threads: int | None, spin_us: int | None) -> Any:
    """The router's session options (`classifiers.session.session_options`) with the pool's spin
    set: `spin_us` microseconds, 0 to sleep at once, None for as long as onnxruntime's default."""
    from classifiers.session import session_options

    options = session_options(threads, spin_us=spin_us or 0)
    if spin_us is None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    return options


def options_of(variant: Variant, threads: int) -> Any:
    """The router's session options (`classifiers.session`), with the variant's change."""
    import onnxruntime as ort

    from classifiers.session import INTRA_OP_SPIN_US

    spin_us = {"router": INTRA_OP_SPIN_US, "off": 0, "default": None}[variant.spin]
    options = spin_options(variant.threads or threads, spin_us)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[variant.level])
    if variant.parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = 2
    return options


def bind(session: Any, feed: dict[str, np.ndarray]) -> Any:
    """An I/O binding of `feed` with preallocated outputs, reusable run after run."""
    import onnxruntime as ort

    batch, width = feed[INPUTS[0]].shape
    binding = session.io_binding()
    for name, value in feed.items():
        binding.bind_cpu_input(name, value)
    shapes = {o.name: o.shape for o in session.get_outputs()}
    for name in OUTPUTS:
        dims = [batch if d == "batch" else width if d == "seq" else d for d in shapes[name]]
        if not all(isinstance(d, int) for d in dims):  # a symbolic name we do not know
            dims = list(session.run([name], feed)[0].shape)
        out = ort.OrtValue.ortvalue_from_numpy(np.empty(dims, dtype=np.float32))
        binding.bind_ortvalue_output(name, out)
    return binding


def runner(session: Any, feed: dict[str, np.ndarray], io_binding: bool) -> Callable[[], None]:
    """One forward of `feed`: `session.run`, or an I/O binding with preallocated outputs."""
    if not io_binding:
        return lambda: session.run(list(OUTPUTS), feed)
    binding = bind(session, feed)
    return lambda: session.run_with_iobinding(binding)


def timed(forward: Callable[[], None], repeats: int, cap_s: float) -> dict[str, Any]:
    """Latency of `forward` in ms over `repeats` runs (fewer if `cap_s` runs out first)."""
    # Here, not at the top: --export-fp32 runs in the training venv, without the router's packages.
    from bench.classifier import percentiles

    for _ in range(min(10, repeats)):
        forward()
    samples: list[float] = []
    deadline = time.perf_counter() + cap_s
    while len(samples) < repeats and (len(samples) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        forward()
        samples.append((time.perf_counter() - start) * 1000)
    return {**percentiles(samples), "runs": len(samples)}


def measure(
    variants: list[Variant],
    graphs: dict[str, Path],
    feeds: dict[int, dict[str, np.ndarray]],
    threads: int,
    repeats: int,
    cap_s: float,
) -> list[dict[str, Any]]:
    import onnxruntime as ort

    rows = []
    for variant in variants:
        path = graphs[variant.model]
        session = ort.InferenceSession(
            str(path), options_of(variant, threads), providers=["CPUExecutionProvider"]
        )
        row: dict[str, Any] = {
            "name": variant.name,
            "option": variant.option,
            "model": variant.model,
            "graph": _shown(path),
            "threads": variant.threads or threads,
            "level": variant.level,
            "spin": variant.spin,
            "execution_mode": "parallel" if variant.parallel else "sequential",
            "io_binding": variant.io_binding,
        }
        for batch, feed in feeds.items():
            result = timed(runner(session, feed, variant.io_binding), repeats, cap_s)
            result["rows_per_s"] = round(batch * 1000 / result["p50"], 1)
            row[f"batch_{batch}"] = result
        print(
            f"  {variant.option:13} {variant.name:34} "
            + "  ".join(f"b{b} p50 {row[f'batch_{b}']['p50']} ms" for b in feeds),
            flush=True,
        )
        rows.append(row)
        del session
    return rows


def session_variants() -> list[Variant]:
    """Each option changed alone from the router's own session options."""
    return [
        Variant("router's options (baseline)", "baseline"),
        *(
            Variant(f"graph optimization: {level}", "optimization", level=level)
            for level in ("disabled", "basic", "extended")
        ),
        Variant("intra-op threads: 1", "threads", threads=1),
        Variant("spin-wait off (sleep at once)", "spin", spin="off"),
        Variant("spin-wait as onnxruntime's default", "spin", spin="default"),
        Variant("parallel execution, 2 inter-op", "execution", parallel=True),
        Variant("I/O binding, preallocated outputs", "io_binding", io_binding=True),
    ]


# --- quantization ----------------------------------------------------------------------------


class _Calibration:
    """`quantize_static`'s data reader: one text a feed, cut to TOKENS."""

    def __init__(self, encoder: Encoder, texts: list[str]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = (encoder.batch([t], TOKENS) for t in texts)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize(fp32: Path, work: Path, encoder: Encoder, calibration: int) -> dict[str, Path]:
    """The dynamic int8 graph training ships, and a static QDQ int8 one calibrated on texts."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dynamic = work / "dynamic.int8.onnx"
    # The same call as classifiers/training/train.py's export_onnx.
    quantize_dynamic(str(fp32), str(dynamic), weight_type=QuantType.QInt8, per_channel=True)
    prepared = work / "fp32.prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    static = work / "static.qdq.int8.onnx"
    started = time.perf_counter()
    quantize_static(
        str(prepared),
        str(static),
        _Calibration(encoder, split_texts("train", calibration)),
        quant_format=QuantFormat.QDQ,
        # MatMuls only, as the dynamic graph: they are the encoder's cost, and quantizing the
        # adds, softmaxes and layer norms too costs accuracy for little time.
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,  # u8 activations, s8 weights: x86's fast VNNI path
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    print(
        f"  static int8 calibrated on {calibration} texts in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return {"fp32": fp32, "dynamic_int8": dynamic, "static_int8": static}


def output_differences(
    graphs: dict[str, Path], encoder: Encoder, texts: list[str], threads: int
) -> dict[str, Any]:
    """Each quantized graph's max and mean |difference| from fp32 per output, on `texts`."""
    import onnxruntime as ort

    from classifiers.session import session_options

    def outputs(path: Path) -> list[list[np.ndarray]]:
        session = ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        # One text a run: no padding, so every PII position is a real token.
        return [session.run(list(OUTPUTS), encoder.batch([t], TOKENS)) for t in texts]

    reference = outputs(graphs["fp32"])
    result: dict[str, Any] = {"texts": len(texts), "split": "dev", "tokens_at_most": TOKENS}
    for name in ("dynamic_int8", "static_int8"):
        got = outputs(graphs[name])
        per_output: dict[str, dict[str, float]] = {}
        for k, output in enumerate(OUTPUTS):
            diffs = np.concatenate(
                [np.abs(g[k] - r[k]).ravel() for g, r in zip(got, reference, strict=True)]
            )
            per_output[output] = {
                "max_abs": round(float(diffs.max()), 5),
                "mean_abs": round(float(diffs.mean()), 6),
            }
        top = [
            int(np.argmax(g[0])) == int(np.argmax(r[0]))
            for g, r in zip(got, reference, strict=True)
        ]
        per_output["domain_probs"]["top_label_agrees"] = round(sum(top) / len(top), 4)
        result[name] = per_output
    return result


def quantization_variants() -> list[Variant]:
    return [
        Variant("fp32", "quantization", model="fp32"),
        Variant("dynamic int8 (as shipped)", "quantization", model="dynamic_int8"),
        Variant("static int8 (QDQ, calibrated)", "quantization", model="static_int8"),
    ]


# --- export (training venv) ------------------------------------------------------------------


def export_fp32(path: Path) -> None:
    """`SignalModel` from the base weights, untrained heads, as training exports it (fp32)."""
    import torch

    from classifiers.training.common import load_tokenizer
    from classifiers.training.model import SignalModel
    from classifiers.training.train import export_fp32 as export

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    export(SignalModel(attn_implementation="eager"), load_tokenizer(), path)
    print(f"wrote {path} (base encoder weights, untrained heads: for speed)")


def to_fp16(fp32: Path, out: Path) -> None:
    """A GPU graph of `fp32`: onnxruntime's BERT fusions (embedding + layer norm, attention,
    skip layer norms, bias GELU), then fp16 weights and activations with the inputs and outputs
    kept as they are (int64 in, float32 out), so the engine reads it as it reads the int8 one.
    Needs sympy (the training venv has it)."""
    from onnxruntime.transformers.optimizer import optimize_model

    # all-MiniLM-L6-v2's shape, as classifiers/training/model.py builds every profile from it.
    model = optimize_model(
        str(fp32), model_type="bert", num_heads=12, hidden_size=384, use_gpu=True, opt_level=0
    )
    print(f"fused: { {k: v for k, v in model.get_fused_operator_statistics().items() if v} }")
    model.convert_float_to_float16(keep_io_types=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(out))
    print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); measure it on a GPU with "
        f"`bash bench/gpu.sh --graph {out.name} {out.parent}`"
    )


# --- report ----------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def markdown(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        f"`{figures['command']}` — {m['cpu']}, {m['cores']} cores, load1 {m['load1_before']} "
        f"before / {m['load1_after']} after; {TOKENS} tokens, {figures['threads']} intra-op "
        f"threads unless the row says otherwise; bare `session.run` (CPU provider).",
        "",
        "| option | variant | graph | batch 1 p50 / p99 ms | batch 8 p50 / p99 ms | "
        "batch 8 rows/s | batch 1 vs baseline |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    base = figures["rows"][0]["batch_1"]["p50"]
    for row in figures["rows"]:
        b1, b8 = row["batch_1"], row["batch_8"]
        lines.append(
            f"| {row['option']} | {row['name']} | {row['model']} | {b1['p50']} / {b1['p99']} | "
            f"{b8['p50']} / {b8['p99']} | {b8['rows_per_s']} | {b1['p50'] / base:.2f}x |"
        )
    accuracy = figures.get("accuracy")
    if accuracy:
        lines += [
            "",
            f"Output differences from fp32 on {accuracy['texts']} held-out (dev) texts, "
            f"≤ {TOKENS} tokens (max / mean absolute):",
            "",
            "| output | dynamic int8 | static int8 (QDQ) |",
            "|---|---:|---:|",
        ]
        for output in OUTPUTS:
            d, s = accuracy["dynamic_int8"][output], accuracy["static_int8"][output]
            lines.append(
                f"| {output} | {d['max_abs']} / {d['mean_abs']} | "
                f"{s['max_abs']} / {s['mean_abs']} |"
            )
        lines.append(
            "| domain top label agrees with fp32 | "
            f"{accuracy['dynamic_int8']['domain_probs']['top_label_agrees']:.1%} | "
            f"{accuracy['static_int8']['domain_probs']['top_label_agrees']:.1%} |"
        )
        lines += ["", f"fp32 graph: `{figures['fp32']}`."]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load1_before": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODELS,
        help="directory with signals.int8.onnx and tokenizer.json",
    )
    parser.add_argument("--fp32", type=Path, help="an fp32 graph: quantization rows and accuracy")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="few runs; results in tmp/")
    parser.add_argument("--calibration", type=int, default=300, help="calibration texts")
    parser.add_argument("--held-out", type=int, default=200, help="dev texts for accuracy")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/...)")
    parser.add_argument(
        "--to-fp16",
        type=Path,
        nargs=2,
        metavar=("FP32", "OUT"),
        help="write a fused fp16 graph of FP32 for a GPU (needs sympy: the training venv) and exit",
    )
    parser.add_argument(
        "--export-fp32",
        type=Path,
        metavar="PATH",
        help="export an fp32 graph (training venv) and exit",
    )
    args = parser.parse_args(argv)
    if args.export_fp32:
        export_fp32(args.export_fp32)
        return 0
    if args.to_fp16:
        to_fp16(*args.to_fp16)
        return 0

    repeats, cap_s = (20, 3.0) if args.quick else (200, 20.0)
    calibration, held_out = (
        (min(args.calibration, 40), min(args.held_out, 20))
        if args.quick
        else (args.calibration, args.held_out)
    )
    out = args.out or (RESULTS / ("tmp" if args.quick else "") / "ort_options.json")
    encoder = Encoder(args.model_dir)
    feeds = {batch: full_length_feed(encoder, batch) for batch in BATCHES}
    graphs = {"shipped": args.model_dir / "signals.int8.onnx"}
    figures: dict[str, Any] = {
        "benchmark": "ort_options",
        "command": "python bench/ort_options.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "threads": args.threads,
        "tokens": TOKENS,
        "repeats": repeats,
    }
    variants = session_variants()
    with tempfile.TemporaryDirectory(prefix="ort-options-") as work:
        if args.fp32:
            graphs |= quantize(args.fp32, Path(work), encoder, calibration)
            variants += quantization_variants()
            figures["fp32"] = _shown(args.fp32)
            figures["calibration_texts"] = calibration
        figures["rows"] = measure(variants, graphs, feeds, args.threads, repeats, cap_s)
        if args.fp32:
            figures["accuracy"] = output_differences(
                graphs, encoder, split_texts("dev", held_out), args.threads
            )
    figures["machine"]["load1_after"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    table = markdown(figures)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {_shown(out)} and {_shown(out.with_suffix('.md'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
