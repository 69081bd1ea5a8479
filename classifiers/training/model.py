"""Fused multi-task model: one MiniLM encoder, five heads, and the ONNX export wrapper."""

from __future__ import annotations

import torch
from torch import nn

from .common import DOMAIN_LABELS, PII_TAGS, base_model_dir


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class SignalModel(nn.Module):
    """`layers`: keep only the encoder's first `layers` transformer layers (a distilled student,
    `distill.py`); None keeps all six (the teacher)."""

    def __init__(self, attn_implementation: str = "sdpa", layers: int | None = None) -> None:
        super().__init__()
        from transformers import BertModel

        self.encoder = BertModel.from_pretrained(
            str(base_model_dir()), add_pooling_layer=False, attn_implementation=attn_implementation
        )
        if layers is not None:
            # The bottom layers, contiguous: dropping the top ones loses least when a smaller
            # model is fine-tuned or distilled (Sajjad et al., "On the effect of dropping layers").
            self.encoder.encoder.layer = self.encoder.encoder.layer[:layers]
            self.encoder.config.num_hidden_layers = layers
        h = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.domain = nn.Linear(h, len(DOMAIN_LABELS))
        self.attack = nn.Linear(h, 1)
        self.harmful = nn.Linear(h, 1)  # stage 3 (issue 15): content-policy harm, not attack
        self.difficulty = nn.Sequential(nn.Linear(h, 128), nn.GELU(), nn.Linear(128, 1))
        self.pii = nn.Linear(h, len(PII_TAGS))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        pooled = self.dropout(masked_mean(hidden, attention_mask))
        return {
            "domain": self.domain(pooled),
            "attack": self.attack(pooled).squeeze(-1),
            "harmful": self.harmful(pooled).squeeze(-1),
            "difficulty": self.difficulty(pooled).squeeze(-1),
            "pii": self.pii(self.dropout(hidden)),
        }

    def load_weights(self, state: dict) -> None:
        """`state`, which may predate the harm head (stages 1-2, an older student): the new
        head then keeps its fresh initialization and learns in stage 3."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"harmful.weight", "harmful.bias"}:
            raise KeyError(
                f"state does not fit SignalModel: missing {missing}, unexpected {unexpected}"
            )


class ExportWrapper(nn.Module):
    """Probabilities out, token_type_ids baked in as zeros."""

    def __init__(self, model: SignalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.model(input_ids, attention_mask)
        return (
            torch.softmax(out["domain"], dim=-1),
            torch.sigmoid(out["attack"]),
            torch.sigmoid(out["difficulty"]),
            torch.softmax(out["pii"], dim=-1),
            torch.sigmoid(out["harmful"]),
        )
