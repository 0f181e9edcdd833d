"""MambaLM: the backbone with a (tied) language-model head, checkpoint loading and decoding."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from autohm.model import checkpoint
from autohm.model.backbone import MambaBackbone
from autohm.model.config import MambaConfig
from autohm.model.mixer import LayerState


class MambaLM(nn.Module):
    """model(input_ids) -> logits (batch, L, padded_vocab_size), as mamba_ssm's
    MambaLMHeadModel and transformers' MambaForCausalLM."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = MambaBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(
        self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.lm_head(self.backbone(input_ids, padding_mask))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MambaLM:
        """Load a local directory (state-spaces or transformers format) or a Hub id, in float32.
        The model is built on the meta device and takes the checkpoint's tensors once their
        names and shapes agree with config.json: nothing is allocated for a config that the
        weights do not match."""
        directory = checkpoint.resolve_checkpoint(path)
        config = checkpoint.read_config(directory)
        state, file = checkpoint.read_weights(directory)
        with torch.device("meta"):
            model = cls(config)
        checkpoint.load_weights_into(
            model, checkpoint.normalise_keys(state, config.tie_embeddings), file
        )
        if config.tie_embeddings:
            model.lm_head.weight = model.backbone.embedding.weight
        return model

    def save_pretrained(self, path: str | Path, format: str | None = None) -> Path:
        """Write config.json and model.safetensors in transformers' layout (what the Hub's
        *-hf Mamba checkpoints use; MambaForCausalLM.from_pretrained reads it) or with
        format="state-spaces" in mamba_ssm's. By default transformers' where it can hold the
        model, state-spaces for a compact one (per-layer widths)."""
        return checkpoint.save_checkpoint(self, path, format)

    def set_scan_backend(self, name: str) -> None:
        """Pin every layer to one scan backend; "auto" (the default) picks per device."""
        self.backbone.set_scan_backend(name)

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[LayerState]]:
        """Logits of a prompt and the decoding states after its last token."""
        hidden, states = self.backbone(input_ids, return_state=True)
        return self.lm_head(hidden), states

    def step(
        self, input_ids: torch.Tensor, states: list[LayerState]
    ) -> tuple[torch.Tensor, list[LayerState]]:
        """Recurrent decoding: one token per sequence (batch,) -> logits (batch, vocab)."""
        hidden, states = self.backbone.step(input_ids, states)
        return self.lm_head(hidden), states

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append max_new_tokens tokens: greedy at temperature 0, else sampled. The logits of
        padded vocabulary rows are never chosen."""
        logits, states = self.prefill(input_ids)
        logits = logits[:, -1]
        tokens = [input_ids]
        for _ in range(max_new_tokens):
            logits = logits[:, : self.config.vocab_size]
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                next_ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                next_ids = logits.argmax(dim=-1)
            tokens.append(next_ids[:, None])
            logits, states = self.step(next_ids, states)
        return torch.cat(tokens, dim=1)
