"""A tiny signals model with the real graph's interface, built in-process (no training needed).

The tiny graph: token embedding, masked mean pool, then one matrix per head. Its PII head reads
each token's embedding alone, and the embedding of a few words is chosen so that the model tags
them: "alice"/"bob" B-PERSON, "smith" I-PERSON, "acme" B-STREET_ADDRESS. "ignore" drives the
attack head up and "derivative" pulls the domain towards math. Other weights are random but
seeded, so every run builds the same model. With `harm=True` the graph has the harm head too
(`harmful_prob`, a path of its own: the other heads are the same): "mat" drives it up.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from classifiers.segments import CONTEXT_FEATURES, HEAD_FILE, HIDDEN_OUTPUT, SegmentHead

DOMAINS = [
    "biology", "business", "chemistry", "computer science", "economics", "engineering",
    "health", "history", "law", "math", "other", "philosophy", "physics", "psychology",
]  # fmt: skip
PII_TYPES = [
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE",
    "IP_ADDRESS", "STREET_ADDRESS",
]  # fmt: skip
TAGS = ["O", *(f"{p}-{t}" for t in PII_TYPES for p in ("B", "I"))]
WORDS = [
    "alice", "bob", "smith", "acme", "ignore", "derivative", "the", "cat", "sat", "on", "mat",
    "my", "name", "is", "hello", "world", "said", "and", "of", "to", "please", "write", "zoe",
    "call", "me", "at", "email", "card", "question", "answer", "previous", "instructions",
]  # fmt: skip
TAGGED = {"alice": "B-PERSON", "bob": "B-PERSON", "smith": "I-PERSON", "acme": "B-STREET_ADDRESS"}
ATTACK_DIM, MATH_DIM = len(TAGS), len(TAGS) + 1
HARM_WORD = "mat"
HIDDEN = len(TAGS) + 6


def tiny_vocab() -> dict[str, int]:
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]
    pieces += list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}


def build_tokenizer(path: Path) -> Tokenizer:
    """A BERT-style WordPiece tokenizer, saved with truncation and padding on, like the real one."""
    vocab = tiny_vocab()
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.enable_truncation(max_length=16)
    tokenizer.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    tokenizer.save(str(path))
    return tokenizer


def build_model(
    path: Path, vocab: dict[str, int], *, harm: bool = False, segments: bool = False
) -> None:
    rng = np.random.default_rng(20240611)
    embedding = np.zeros((len(vocab), HIDDEN), dtype=np.float32)
    embedding[:, 0] = 1.0  # every token is O unless chosen below
    embedding[:, len(TAGS) + 2 :] = rng.normal(0, 1, (len(vocab), HIDDEN - len(TAGS) - 2))
    for word, tag in TAGGED.items():
        embedding[vocab[word], 0] = 0.0
        embedding[vocab[word], TAGS.index(tag)] = 1.0
    embedding[vocab["ignore"], ATTACK_DIM] = 4.0
    embedding[vocab["derivative"], MATH_DIM] = 4.0

    pii_w = np.zeros((HIDDEN, len(TAGS)), dtype=np.float32)
    pii_w[: len(TAGS), : len(TAGS)] = 12.0 * np.eye(len(TAGS), dtype=np.float32)
    domain_w = rng.normal(0, 0.3, (HIDDEN, len(DOMAINS))).astype(np.float32)
    domain_w[MATH_DIM, DOMAINS.index("math")] = 10.0
    attack_w = rng.normal(0, 0.1, (HIDDEN, 1)).astype(np.float32)
    attack_w[ATTACK_DIM, 0] = 4.0
    difficulty_w = rng.normal(0, 0.5, (HIDDEN, 1)).astype(np.float32)

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value, name)

    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "domain_w"], ["domain_logits"]),
        helper.make_node("Softmax", ["domain_logits"], ["domain_probs"], axis=-1),
        helper.make_node("MatMul", ["pooled", "attack_w"], ["attack_logit"]),
        helper.make_node("Add", ["attack_logit", "attack_b"], ["attack_shifted"]),
        helper.make_node("Sigmoid", ["attack_shifted"], ["attack_2d"]),
        helper.make_node("Squeeze", ["attack_2d", "axis1"], ["attack_prob"]),
        helper.make_node("MatMul", ["pooled", "difficulty_w"], ["difficulty_logit"]),
        helper.make_node("Sigmoid", ["difficulty_logit"], ["difficulty_2d"]),
        helper.make_node("Squeeze", ["difficulty_2d", "axis1"], ["difficulty_prob"]),
        helper.make_node("MatMul", ["emb", "pii_w"], ["pii_logits"]),
        helper.make_node("Softmax", ["pii_logits"], ["pii_probs"], axis=-1),
    ]
    initializers = [
        const("embedding", embedding),
        const("pii_w", pii_w),
        const("domain_w", domain_w),
        const("attack_w", attack_w),
        const("attack_b", np.array([-2.0], dtype=np.float32)),
        const("difficulty_w", difficulty_w),
        const("axis1", np.array([1], dtype=np.int64)),
        const("axis2", np.array([2], dtype=np.int64)),
    ]
    outputs = [
        helper.make_tensor_value_info("domain_probs", TensorProto.FLOAT, ["batch", 14]),
        helper.make_tensor_value_info("attack_prob", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("difficulty_prob", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("pii_probs", TensorProto.FLOAT, ["batch", "seq", len(TAGS)]),
    ]
    if harm:  # the masked mean of a per-token harm weight: "mat" 16, every other token 0
        harm_embedding = np.zeros((len(vocab), 1), dtype=np.float32)
        harm_embedding[vocab[HARM_WORD], 0] = 16.0
        nodes += [
            helper.make_node("Gather", ["harm_embedding", "input_ids"], ["harm_emb"]),
            helper.make_node("Mul", ["harm_emb", "mask3"], ["harm_masked"]),
            helper.make_node("ReduceSum", ["harm_masked", "axis1"], ["harm_summed"], keepdims=0),
            helper.make_node("Div", ["harm_summed", "count"], ["harm_pooled"]),
            helper.make_node("Add", ["harm_pooled", "attack_b"], ["harm_shifted"]),
            helper.make_node("Sigmoid", ["harm_shifted"], ["harm_2d"]),
            helper.make_node("Squeeze", ["harm_2d", "axis1"], ["harmful_prob"]),
        ]
        initializers.append(const("harm_embedding", harm_embedding))
        outputs.append(helper.make_tensor_value_info("harmful_prob", TensorProto.FLOAT, ["batch"]))
    if segments:  # the token states the segment head pools: the tiny graph's embeddings
        nodes.append(helper.make_node("Identity", ["emb"], [HIDDEN_OUTPUT]))
        outputs.append(
            helper.make_tensor_value_info(
                HIDDEN_OUTPUT, TensorProto.FLOAT, ["batch", "seq", HIDDEN]
            )
        )
    graph = helper.make_graph(
        nodes,
        "tiny_signals",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_model_dir(
    directory: Path, *, harm: bool = False, segments: bool = False, **spec: object
) -> Path:
    """`directory` laid out like classifiers/models/, holding the tiny model (with the harm head
    and `thresholds.harmful` 0.5 when `harm`; with its token states and a segment head that
    fires on a segment holding "ignore" when `segments`); `spec` overrides fields of its
    signals.json."""
    build_tokenizer(directory / "tokenizer.json")
    build_model(directory / "signals.int8.onnx", tiny_vocab(), harm=harm, segments=segments)
    if segments:
        (directory / HEAD_FILE).write_text(json.dumps(segment_head_json()))
    if harm:
        thresholds = {"prompt_attack": 0.5, "pii_token": 0.5, "difficulty": 0.5, "harmful": 0.5}
        spec = {"thresholds": thresholds, **spec}
    (directory / "signals.json").write_text(json.dumps(spec_json(**spec)))
    return directory


def segment_head_json() -> dict[str, object]:
    """A segment head on the tiny states: "ignore" in a segment of about six tokens scores ~0.97,
    a segment without it ~0.05."""
    weights = np.zeros(HIDDEN + CONTEXT_FEATURES, dtype=np.float32)
    weights[ATTACK_DIM] = 10.0
    return SegmentHead(weights, -3.0, 0.5, "tiny-test-1+segments").to_json()


def spec_json(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "version": "tiny-test-1",
        "max_length": 256,
        "train_length": 128,
        "domain_labels": DOMAINS,
        "pii_tags": TAGS,
        "thresholds": {"prompt_attack": 0.5, "pii_token": 0.5, "difficulty": 0.5},
        "difficulty_pair": {"weak": "small", "strong": "large"},
        "inputs": [],
        "outputs": [],
    }
    spec.update(overrides)
    return spec
