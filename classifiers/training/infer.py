"""Tokenization and batched onnxruntime inference for the fused signals graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifiers import calibration


def encode(tokenizer, texts: list[str], max_length: int, offsets: bool = False):
    enc = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=offsets,
        add_special_tokens=True,
    )
    return enc


def padded(ids: list[list[int]], idx) -> dict[str, np.ndarray]:
    """The graph's inputs for rows `idx` of `ids`, right-padded to the longest."""
    L = max(len(ids[i]) for i in idx)
    x = np.zeros((len(idx), L), np.int64)
    m = np.zeros((len(idx), L), np.int64)
    for r, i in enumerate(idx):
        x[r, : len(ids[i])] = ids[i]
        m[r, : len(ids[i])] = 1
    return {"input_ids": x, "attention_mask": m}


class OnnxRunner:
    """`temperatures`: each head's calibration temperature (`classifiers.calibration`); None reads
    them from the `signals.json` next to the graph, when it has them; {} gives the raw outputs."""

    def __init__(self, path: Path, threads: int = 2, temperatures: dict | None = None) -> None:
        import json

        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        if temperatures is None:
            spec = Path(path).parent / "signals.json"
            temperatures = (
                json.loads(spec.read_text()).get("temperatures", {}) if spec.exists() else {}
            )
        self.temperatures = temperatures

    def run_ids(self, ids: list[list[int]], batch: int = 32) -> dict:
        n = len(ids)
        order = np.argsort([len(x) for x in ids], kind="stable")
        dom = np.zeros((n, 0), np.float32)
        att = np.zeros(n, np.float32)
        dif = np.zeros(n, np.float32)
        harm = np.full(n, np.nan, np.float32)  # NaN: the graph has no harm head
        pii: list = [None] * n
        dom_rows = [None] * n
        for b in range(0, n, batch):
            idx = order[b : b + batch]
            got = dict(zip(self.outputs, self.session.run(None, padded(ids, idx))))
            got = calibration.apply(got, self.temperatures)
            d, a, f, p = (
                got[k] for k in ("domain_probs", "attack_prob", "difficulty_prob", "pii_probs")
            )
            for r, i in enumerate(idx):
                dom_rows[i] = d[r]
                att[i] = a[r]
                dif[i] = f[r]
                pii[i] = p[r, : len(ids[i])]
                if "harmful_prob" in got:
                    harm[i] = got["harmful_prob"][r]
        if n:
            dom = np.stack(dom_rows)
        return {"domain": dom, "attack": att, "difficulty": dif, "pii": pii, "harmful": harm}

    def run_texts(self, tokenizer, texts: list[str], max_length: int, batch: int = 32) -> dict:
        enc = encode(tokenizer, texts, max_length)
        return self.run_ids(enc["input_ids"], batch)
