"""The causal-LM objective (GPT's left-to-right language modelling): what the engine asks of it.

A GPT-2-style decoder built from the preset's sizes (no hub download) reads each packed block and
predicts every next token: the loss is on every position but the last, with nothing masked and no
padding. Its blocks (`PACKING`: clean_tokenize with `objective: causal_lm`) are the documents'
tokens back to back, each document followed by [SEP] as the end-of-text token (GPT-2's
<|endoftext|>), with no [CLS] and no padding; attention crosses document boundaries inside a
block, as in GPT-2 and the `run_clm` recipe (`group_texts`).

The vocabulary projection at every position is the largest tensor of a small decoder (positions x
vocab logits, in float32 for the loss); `chunked_cross_entropy` computes it a chunk of rows at a
time and takes each chunk's gradients at once, so only one chunk's logits ever exist and none is
recomputed (Liger-Kernel's fused linear cross-entropy, in plain torch).
"""

from __future__ import annotations

import functools

DESCRIPTION = "causal-LM pretraining"
MODEL_TYPES = ("gpt2",)  # the saved models' config.model_type: how evaluate finds the objective
CARD = {"architecture": "GPT-2-style decoder (classifier pools the last non-pad token)", "pretraining": "causal-language-model (next-token) pretraining", "perplexity": "next-token"}  # model-card text
# Documents back to back, [SEP] (the end-of-text token) after each; no block prefix, no padding.
PACKING = {"block_prefix": None, "doc_separator": "[SEP]"}
# Logits per chunk (16 MiB in float32): rows = CHUNK_LOGITS // vocab, at least 128 (the demo's
# 8k vocabulary: 524 of its 32 x 127 rows). Measured at the demo's sizes on one CPU thread, the head
# and loss of a step took 0.65 s of CPU this way against 1.1 s for one dense cross-entropy over all
# 130 MiB of logits: fewer passes over the logits, and chunks small enough for the allocator to
# reuse instead of mapping fresh pages every step.
CHUNK_LOGITS = 2**22


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
    """sum(cross_entropy(hidden @ weight.T, targets)) over `rows` rows at a time; targets of -100
    are ignored.

    With gradients wanted, each chunk's gradients (softmax minus the one-hot target, times the
    weight and the hidden rows) are computed in the forward pass while its logits exist, and the
    backward pass only scales them: the same matmul FLOPs as the dense loss, one chunk of logits at
    a time, nothing recomputed. Under autocast the matmuls run in its dtype, the softmax and the
    sums in float32, as autocast would run the dense loss.
    """
    import torch

    rows = rows or max(128, CHUNK_LOGITS // weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else hidden.dtype
        # torch.compile leaves it eager (a Python loop of in-place ops): the decoder around it compiles
        return torch.compiler.disable(_fused_class().apply)(hidden, weight, targets, rows, dtype)
    with torch.no_grad():
        return sum(_summed_ce(hidden[i : i + rows], weight, targets[i : i + rows]) for i in range(0, hidden.shape[0], rows))


def _summed_ce(hidden, weight, targets):
    import torch.nn.functional as F

    return F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum")


@functools.cache  # built on first use: torch is not imported with this module
def _fused_class():
    import torch

    class FusedLinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, rows, dtype):
            with torch.autocast(hidden.device.type, enabled=False):
                h, w = hidden.to(dtype), weight.to(dtype)
                grad_h = torch.empty_like(hidden, dtype=dtype)
                grad_w = torch.zeros_like(weight, dtype=torch.float32)
                total = torch.zeros((), device=hidden.device, dtype=torch.float32)
                for i in range(0, h.shape[0], rows):
                    hc, tc = h[i : i + rows], targets[i : i + rows]
                    keep = tc != -100
                    tc = tc.clamp(min=0)
                    logits = (hc @ w.t()).float()
                    target_logit = logits.gather(1, tc[:, None]).squeeze(1)
                    top = logits.amax(1, keepdim=True)
                    probs = logits.sub_(top).exp_()  # one exp, in place of the logits (logsumexp would take another)
                    sums = probs.sum(1, keepdim=True)
                    total += ((top + sums.log()).squeeze(1) - target_logit).mul(keep).sum()
                    probs.div_(sums)  # the softmax
                    probs[torch.arange(len(tc), device=probs.device), tc] -= 1.0
                    probs.mul_(keep[:, None])  # d loss / d logits; ignored rows contribute nothing
                    grad = probs.to(dtype)
                    grad_h[i : i + rows] = grad @ w
                    grad_w += grad.t() @ hc  # the matmul in autocast's dtype, the sum over chunks in float32
            ctx.save_for_backward(grad_h, grad_w)
            ctx.dtypes = (hidden.dtype, weight.dtype)
            return total

        @staticmethod
        def backward(ctx, grad_total):
            grad_h, grad_w = ctx.saved_tensors
            return (grad_h * grad_total).to(ctx.dtypes[0]), (grad_w * grad_total).to(ctx.dtypes[1]), None, None, None

    return FusedLinearCrossEntropy


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
    causal attention), the tied head at every target."""
    c = model_config
    h, inner = c.n_embd, c.n_inner or 4 * c.n_embd
    layer = 8 * h * h + 4 * h * inner + 4 * seq_len * h
    return 3.0 * (tokens * c.n_layer * layer + targets * 2 * h * c.vocab_size)
