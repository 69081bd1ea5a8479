"""What the harm head and the temperatures cost a classification, before the retrained model.

    python bench/harm_head_cost.py [--model-dir DIR] [--seconds 8] [--out FILE]

Three engines on the same model (default: the shipped one), the same 128-token prompt:
  1. as shipped (four outputs, no temperatures);
  2. with a temperature on every head (`calibration.apply` on each forward's outputs);
  3. a copy of the graph with a fifth output, `harmful_prob` (a sigmoid of a linear map of the
     pooled tensor, random weights: the cost of the head, not its accuracy), and temperatures.
Each is timed through the runtime (`classify_text`) and as the bare `session.run` of its
outputs, `--seconds` each (bench/classifier.py's samplers). The copy lives in a temporary
directory. Once a model with a trained harm head ships, compare it with the old one instead:
`python bench/classifier.py --model-dir DIR` for each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.classifier import bare_forward, load_engine, prompt_of, single  # noqa: E402
from classifiers.engine import DEFAULT_MODEL_DIR  # noqa: E402
from classifiers.spec import HARM_OUTPUT, MODEL_FILE, SPEC_FILE, TOKENIZER_FILE  # noqa: E402

# The encoder's masked mean pool in the exported graph (what every sentence head reads).
POOLED = "/model/Div_output_0"
ATTACK_WEIGHT = "model.attack.weight_Transposed_quantized"
TEMPERATURES = {"domain": 1.5, "prompt_attack": 1.5, "harmful": 1.5, "difficulty": 1.5, "pii": 1.5}


def with_temperatures(source: Path, target: Path) -> Path:
    """The model in `source` with a temperature on every head (the graph shared by a link)."""
    target.mkdir()
    for name in (MODEL_FILE, TOKENIZER_FILE):
        (target / name).symlink_to(source / name)
    spec = json.loads((source / SPEC_FILE).read_text())
    (target / SPEC_FILE).write_text(json.dumps({**spec, "temperatures": TEMPERATURES}))
    return target


def with_harm_head(source: Path, target: Path) -> Path:
    """A copy of the model in `source` with `harmful_prob` added, and its spec to match."""
    target.mkdir()
    model = onnx.load(str(source / MODEL_FILE))
    attack = next(i for i in model.graph.initializer if i.name == ATTACK_WEIGHT)
    hidden = int(attack.dims[0])  # [hidden, 1]: the pooled width
    weight = np.random.default_rng(0).normal(0, 0.05, (hidden, 1)).astype(np.float32)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(weight, "harm_w"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "harm_axis"),
        ]
    )
    model.graph.node.extend(
        [
            helper.make_node("MatMul", [POOLED, "harm_w"], ["harm_logit"]),
            helper.make_node("Squeeze", ["harm_logit", "harm_axis"], ["harm_squeezed"]),
            helper.make_node("Sigmoid", ["harm_squeezed"], [HARM_OUTPUT]),
        ]
    )
    output = helper.make_tensor_value_info(HARM_OUTPUT, TensorProto.FLOAT, ["batch"])
    model.graph.output.append(output)
    onnx.save(model, str(target / MODEL_FILE))
    shutil.copy(source / TOKENIZER_FILE, target / TOKENIZER_FILE)
    spec = json.loads((source / SPEC_FILE).read_text())
    thresholds = {**spec["thresholds"], "harmful": 0.5}
    spec = {**spec, "thresholds": thresholds, "temperatures": TEMPERATURES}
    (target / SPEC_FILE).write_text(json.dumps(spec))
    return target


async def measure(model_dir: Path, seconds: float) -> dict[str, Any]:
    engine = load_engine("cpu", model_dir)
    try:
        text = prompt_of(engine, 128)
        runtime = await single(engine, text, 10_000, cap_s=seconds)
        bare = bare_forward(engine, 128, 10_000, cap_s=seconds)
        return {"runtime_ms": runtime, "bare_forward_ms": bare, "outputs": engine.spec.outputs}
    finally:
        engine.close()


async def main(model_dir: Path, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        calibrated = with_temperatures(model_dir, Path(scratch) / "t")
        harm = with_harm_head(model_dir, Path(scratch) / "h")
        return {
            "shipped": await measure(model_dir, seconds),
            "temperatures": await measure(calibrated, seconds),
            "harm_head_and_temperatures": await measure(harm, seconds),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=8.0, help="per engine and sampler")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = asyncio.run(main(args.model_dir, args.seconds))
    for name, r in results.items():
        rt, bare = r["runtime_ms"], r["bare_forward_ms"]
        print(
            f"{name:<28} runtime p50 {rt['p50']:.2f} ms p99 {rt['p99']:.2f} ms; "
            f"bare forward p50 {bare['p50']:.2f} ms ({len(r['outputs'])} outputs)"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, default=list) + "\n")
