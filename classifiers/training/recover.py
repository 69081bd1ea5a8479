"""Weights back from an int8 graph, when the fp32 checkpoint behind it was not kept.

`quantize_dynamic` keeps every bias, LayerNorm and the heads' names; the MatMul weights are
named by the torch exporter's node path (`/model/encoder/encoder/layer.0/attention/self/query/
MatMul`), which is the module path. Each int8 weight is dequantized, (q - zero_point) * scale
per output channel: the error is the quantization's own (about 1% of a weight's range), which
the next fine-tuning stage absorbs. Checked against the graph: the recovered torch model's
outputs match the int8 graph's within its own activation-quantization noise.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import torch
from onnx import numpy_helper


def state_from_int8_onnx(path) -> dict[str, torch.Tensor]:
    """Dequantized weights of an int8 graph exported from SignalModel, as a state dict."""
    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    state = {}

    def deq(base):
        q = init[base + "_quantized"].astype(np.float32)
        s = init[base + "_scale"].astype(np.float32)
        z = init[base + "_zero_point"].astype(np.float32)
        return (q - z) * s  # per-channel: scale over the last axis of [in, out]

    for name, arr in init.items():
        if name.startswith("model.") and not name.endswith(("_quantized", "_scale", "_zero_point")):
            state[name[len("model.") :]] = arr
    for node in g.node:
        if node.op_type == "MatMulInteger":
            wname = node.input[1][: -len("_quantized")]
            if wname.startswith("model."):  # heads: 'model.domain.weight_Transposed'
                key = wname[len("model.") :].replace("_Transposed", "")
            else:
                m = re.match(r"/model/(.+)/MatMul_output_0_output_quantized", node.output[0])
                if m is None:
                    m = re.match(r"/model/(.+)/MatMul", node.output[0])
                key = m.group(1).replace("/", ".") + ".weight"
            state[key] = deq(wname).T
        if node.op_type == "Gather" and node.input[0].endswith("_quantized"):
            base = node.input[0][: -len("_quantized")]
            state[base[len("model.") :]] = deq(base)
    return {k: torch.tensor(np.ascontiguousarray(v)) for k, v in state.items()}
