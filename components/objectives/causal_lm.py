"""The causal-LM objective (GPT's left-to-right language modelling): what the engine asks of it.

A GPT-2-style decoder built from the preset's sizes (no hub download) reads each packed block and
predicts every next token: the loss is on every position but the last, with nothing masked and no
padding. Its blocks (`PACKING`: clean_tokenize with `objective: causal_lm`) are the documents'
tokens back to back, each document followed by [SEP] as the end-of-text token (GPT-2's
<|endoftext|>), with no [CLS] and no padding; attention crosses document boundaries inside a
block, as in GPT-2 and the `run_clm` recipe (`group_texts`).

The vocabulary projection at every position is the largest tensor of a small decoder (positions x
vocab logits, in float32 for the loss); `chunked_cross_entropy` computes it a chunk of rows at a
time and again in the backward pass, so only one chunk's logits ever exist at once.
"""

from __future__ import annotations

DESCRIPTION = "causal-LM pretraining"
MODEL_TYPES = ("gpt2",)  # the saved models' config.model_type: how evaluate finds the objective
CARD = {"architecture": "GPT-2-style decoder (classifier pools the last non-pad token)", "pretraining": "causal-language-model (next-token) pretraining", "perplexity": "next-token"}  # model-card text
# Documents back to back, [SEP] (the end-of-text token) after each; no block prefix, no padding.
PACKING = {"block_prefix": None, "doc_separator": "[SEP]"}
# Logits per chunk (128 MiB in float32): rows = CHUNK_LOGITS // vocab, at least 128. The demo's
# micro-batch (32 x 127 rows, 8k vocabulary) fits in one chunk, computed without recomputation;
# BERT-base sizes (16k rows of 512-token blocks, 30k vocabulary: 2 GB of logits) take 15.
CHUNK_LOGITS = 2**25


def build_model(sizes, tokenizer):
    """A randomly initialised GPT2LMHeadModel (tied input/output embeddings) of the preset's sizes."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=sizes.max_position,
        n_embd=sizes.hidden_size,
        n_layer=sizes.num_layers,
        n_head=sizes.num_heads,
        n_inner=sizes.intermediate_size,
        resid_pdrop=sizes.dropout,
        embd_pdrop=sizes.dropout,
        attn_pdrop=sizes.dropout,
        bos_token_id=tokenizer.sep_token_id,  # GPT-2: one end-of-text token opens and closes (the blocks hold no [CLS])
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,  # a fine-tuned classifier pools the last non-pad token
        attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(config)


def load_model(init_from: str):
    """A causal LM from a local checkpoint directory or a hub id (e.g. a decoder this stage wrote)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from components.shared.errors import UserError
    from components.shared.modeling import _from_checkpoint

    config = _from_checkpoint(AutoConfig, init_from)
    if config.model_type not in MODEL_TYPES:  # the FLOP count and evaluate's objective look-up know GPT-2's config alone
        raise UserError(f"init_from {init_from!r} is a {config.model_type} model: pretrain.objective causal_lm continues GPT-2 decoders ({', '.join(MODEL_TYPES)}); use objective masked_lm for BERT")
    return _from_checkpoint(AutoModelForCausalLM, init_from, attn_implementation="sdpa")


def training_blocks(blocks, tokenizer, config):
    """What the engine draws from: the packed blocks themselves."""
    return blocks


class Batches:
    """Batch preparation: the inputs are the blocks, the labels the blocks shifted by one token.
    Nothing is random, so the state is empty (the engine's block order carries the position)."""

    def __init__(self, tokenizer, config):
        pass

    def __call__(self, ids):
        labels = ids[:, 1:].contiguous()
        return ids, labels, labels.numel()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def step_module(model):
    """A module whose forward(inputs, targets) is the summed next-token cross-entropy; a module (not
    a function) so that DDP can wrap it."""
    import torch

    class CausalLM(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, inputs, targets):
            hidden = self.lm.base_model(input_ids=inputs, use_cache=False).last_hidden_state[:, :-1]
            return chunked_cross_entropy(hidden.flatten(0, 1), self.lm.get_output_embeddings().weight, targets)

    return CausalLM(model)


def chunked_cross_entropy(hidden, weight, targets, rows: int | None = None):
    """sum(cross_entropy(hidden @ weight.T, targets)) over `rows` rows at a time.

    Each chunk runs under activation checkpointing: its float32 logits are freed after the forward
    and recomputed in the backward, so peak memory holds one chunk of logits instead of all of
    them, for one extra head matmul per step (Liger-Kernel's fused linear cross-entropy does the
    same in one kernel). A batch that fits in one chunk is computed directly. Targets of -100 are ignored.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    rows = rows or max(128, CHUNK_LOGITS // weight.shape[0])
    if hidden.shape[0] <= rows:  # one chunk: nothing to save by recomputing it
        return _summed_ce(hidden, weight, targets)
    total = torch.zeros((), device=hidden.device)
    for i in range(0, hidden.shape[0], rows):
        total = total + checkpoint(_summed_ce, hidden[i : i + rows], weight, targets[i : i + rows], use_reentrant=False)
    return total


def _summed_ce(hidden, weight, targets):
    import torch.nn.functional as F

    return F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum")


def micro_batch(inputs, labels, fixed):
    return inputs, labels.flatten()


def fixed_shapes(block_size: int, micro: int, config):
    return None  # every step already has the same shapes: nothing is gathered


def heldout_loss(model, tokenizer, ids, seed: int, blocks_per_pass: int = 32) -> float:
    """Mean next-token cross-entropy over held-out blocks (perplexity = exp); `seed` is unused:
    nothing is drawn."""
    import torch

    module, total, count = step_module(model), 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ids), blocks_per_pass):
            part = ids[i : i + blocks_per_pass]
            total += float(module(part, part[:, 1:].flatten()))
            count += part[:, 1:].numel()
    return total / count


def heldout_perplexity(pretrained_dir, blocks, batch_size: int, mlm_probability: float, seed: int) -> float:
    """evaluate's score: exp(mean next-token cross-entropy) on int64 held-out `blocks`; nothing
    is drawn, so the masking rate and seed are unused."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pretrained_dir)
    loss = heldout_loss(model, None, torch.from_numpy(blocks), seed, blocks_per_pass=batch_size)
    return float(math.exp(loss))


def train_flops(tokens: int, targets: int, seq_len: int, model_config) -> float:
    """Forward + backward (3x forward, PaLM's convention) matmul FLOPs: every layer at every token
    (QKV and output projections, feed-forward, QK^T and AV over the whole block, as PaLM counts
    causal attention), the tied head at every target. The head's recomputation in the chunked
    loss's backward is not counted: it is not model work."""
    c = model_config
    h, inner = c.n_embd, c.n_inner or 4 * c.n_embd
    layer = 8 * h * h + 4 * h * inner + 4 * seq_len * h
    return 3.0 * (tokens * c.n_layer * layer + targets * 2 * h * c.vocab_size)
