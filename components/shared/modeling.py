"""Model builders: a BERT-style encoder from preset sizes, never from a hub download."""

from __future__ import annotations

from pydantic import Field, model_validator

from components.shared.config import StageConfig


class ModelSizes(StageConfig):
    hidden_size: int = Field(128, ge=8, description="width of the encoder")
    num_layers: int = Field(2, ge=1, description="transformer blocks")
    num_heads: int = Field(2, ge=1, description="attention heads; must divide hidden_size")
    intermediate_size: int = Field(512, ge=8, description="feed-forward width (4x hidden is BERT's ratio)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="hidden and attention dropout")
    max_position: int = Field(512, ge=8, description="position embeddings: at least the block and sequence length")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}: change one of them")
        return self


def build_mlm(sizes: ModelSizes, tokenizer):
    """A randomly initialised BertForMaskedLM whose vocabulary matches the trained tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes.hidden_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
        intermediate_size=sizes.intermediate_size,
        hidden_dropout_prob=sizes.dropout,
        attention_probs_dropout_prob=sizes.dropout,
        max_position_embeddings=sizes.max_position,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForMaskedLM(config)
