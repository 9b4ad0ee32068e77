"""The masked-LM objective (BERT, with RoBERTa's dynamic masking): what the engine asks of it.

Of the non-special tokens of each packed block, `mlm_probability` are predicted (80% [MASK], 10% a
random token, 10% unchanged), drawn anew for every batch from a seeded generator of its own, so
every rank draws the same masks and a resumed run the masks it would have drawn. The loss is the
cross-entropy at the masked positions only, through a sparse head (`sparse_mlm_module`).
"""

from __future__ import annotations

import math

from components.shared.modeling import build_mlm as build_model  # noqa: F401 (part of the objective's interface)
from components.shared.modeling import load_mlm as load_model  # noqa: F401

DESCRIPTION = "masked-LM pretraining"
MODEL_TYPES = ("bert",)  # the saved models' config.model_type: how evaluate finds the objective
CARD = {"architecture": "BERT-style encoder", "pretraining": "masked-language-model pretraining", "perplexity": "masked-LM"}  # model-card text
# Blocks open with [CLS] and every document ends with [SEP] (clean_tokenize.packing does this).
PACKING = {"block_prefix": "[CLS]", "doc_separator": "[SEP]"}


def training_blocks(blocks, tokenizer, config):
    """What the engine draws from: the packed blocks themselves."""
    return blocks


class Batches:
    """Batch preparation: BERT's masking of a global batch of blocks; n_targets = masked positions."""

    def __init__(self, tokenizer, config):
        self.masker = Masker(tokenizer, config.mlm_probability, config.seed + 1)

    def __call__(self, ids):
        inputs, labels = self.masker(ids)
        return inputs, labels, int((labels != -100).sum())

    def state_dict(self) -> dict:
        return self.masker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.masker.load_state_dict(state)


def step_module(model):
    return sparse_mlm_module(model)


def micro_batch(inputs, labels, fixed):
    """The step module's arguments for one micro-batch: the inputs and the masked positions' layout."""
    return (inputs, *masked_layout(labels, *(fixed or (0, 0))))


def fixed_shapes(block_size: int, micro: int, config) -> tuple[int, int]:
    """Padded layout sizes for a compiled step: one compile, no recompiles for varying mask counts."""
    p = config.mlm_probability
    return min(masked_cap(block_size, p, 8), block_size), masked_cap(micro * block_size, p, 64)


def heldout_loss(model, tokenizer, ids, seed: int, p: float = 0.15) -> float:
    """Mean cross-entropy over the masked positions of held-out blocks, masks seeded by `seed`."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        inputs, labels = Masker(tokenizer, p, seed)(ids.cpu())  # the masker draws on the CPU (same masks on any device)
        return float(masked_lm_loss(model, inputs.to(device), labels.to(device)))


def heldout_perplexity(pretrained_dir, blocks, batch_size: int, mlm_probability: float, seed: int) -> float:
    """evaluate's score: exp(mean cross-entropy over masked positions) on int64 held-out `blocks`,
    masked by transformers' collator under `seed` (the numbers evaluate has always reported)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return mlm_perplexity(AutoModelForMaskedLM.from_pretrained(pretrained_dir), AutoTokenizer.from_pretrained(pretrained_dir), blocks, batch_size, mlm_probability, seed)


def mlm_perplexity(model, tokenizer, blocks, batch_size: int, mlm_probability: float, seed: int) -> float:
    """heldout_perplexity of a loaded masked LM (replaced_token scores its generator this way)."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    model = model.eval()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
    torch.manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            inputs, labels = collator.torch_mask_tokens(torch.from_numpy(blocks[start : start + batch_size]))
            n = int((labels != -100).sum())
            if n:
                total += model(input_ids=inputs, labels=labels).loss.item() * n
                count += n
    if count == 0:
        from components.shared.errors import UserError

        raise UserError("no held-out token was masked, so perplexity is undefined: raise evaluate.mlm_probability or max_heldout_blocks")
    return float(math.exp(total / count))


def train_flops(tokens: int, targets: int, seq_len: int, model_config) -> float:
    """Forward + backward FLOPs of the engine's steps: the sparse last layer and head at the targets."""
    from components.shared import flops

    return flops.train_flops(tokens, targets, seq_len, model_config)


class Masker:
    """BERT's dynamic masking, vectorised: of the non-special tokens, `p` are predicted; of those
    80% become [MASK], 10% a random token, 10% stay. Drawn from a seeded generator of its own."""

    def __init__(self, tokenizer, p: float, seed: int):
        import torch

        self.p, self.g = p, torch.Generator().manual_seed(seed)
        self.mask_id, self.vocab = tokenizer.mask_token_id, len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, ids):
        import torch

        while True:
            u = torch.rand(ids.shape, generator=self.g)
            picked = (u < self.p) & ~torch.isin(ids, self.special)
            if picked.any():  # tiny batches can draw no mask at all: draw again
                break
        kind = torch.rand(ids.shape, generator=self.g)
        noise = torch.randint(self.vocab, ids.shape, generator=self.g)
        inputs = torch.where(picked & (kind < 0.8), self.mask_id, ids)
        inputs = torch.where(picked & (kind >= 0.8) & (kind < 0.9), noise, inputs)
        return inputs, torch.where(picked, ids, -100)

    def state_dict(self) -> dict:
        return {"g": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["g"])


def sparse_mlm_module(model):
    """A module whose forward returns the summed cross-entropy over the masked positions only.

    The vocabulary projection is the costliest matmul of a small encoder (hidden x vocab at every
    position); only ~15% of positions have a label, so gathering them first (as Cramming does)
    cuts its cost ~6x for the same loss. The last encoder layer is cut the same way: its keys and
    values need every position, but its queries, attention output, LayerNorms and feed-forward
    feed only the masked positions' logits, so they are computed there alone (the other rows of
    the last layer never reach the loss: same loss, same gradients, ~15% less work on a CPU at
    the small size). The row layout comes in from the host (`masked_layout`), where the labels
    are drawn: finding it on the GPU would stall the host on every step until the forward had
    finished. A module (not a function) so that DDP can wrap it.
    """
    import torch
    import torch.nn.functional as F

    class SparseMLM(torch.nn.Module):
        def __init__(self, mlm):
            super().__init__()
            self.mlm = mlm

        def forward(self, inputs, query_rows, slots, targets):
            bert = self.mlm.bert
            *body, last = bert.encoder.layer
            hidden = bert.embeddings(input_ids=inputs)
            for layer in body:
                hidden = layer(hidden)
            hidden = _last_layer_at(last, hidden, query_rows, slots)
            logits = self.mlm.cls.predictions(hidden)  # the MLM head of BertForMaskedLM and of BertForPreTraining (NSP)
            return F.cross_entropy(logits.float(), targets, reduction="sum")

    return SparseMLM(model)


def _last_layer_at(layer, hidden, query_rows, slots):
    """A BertLayer's output at `query_rows` (flat [batch * seq] indices, `per` rows per block, each
    block's rows among its own) and then at `slots` of those: keys and values from every position."""
    import torch.nn.functional as F

    B, L, _ = hidden.shape
    per = len(query_rows) // B
    att = layer.attention.self
    d = att.attention_head_size
    x = hidden.flatten(0, 1).index_select(0, query_rows)  # [B * per, hidden]
    q = att.query(x).view(B, per, -1, d).transpose(1, 2)
    k = att.key(hidden).view(B, L, -1, d).transpose(1, 2)
    v = att.value(hidden).view(B, L, -1, d).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=att.dropout.p if att.training else 0.0, scale=att.scaling)
    a = a.transpose(1, 2).reshape(B * per, -1).index_select(0, slots)
    h = layer.attention.output(a, x.index_select(0, slots))
    return layer.output(layer.intermediate(h), h)


def masked_layout(labels, rows_per_block: int = 0, rows: int = 0):
    """(query_rows, slots, targets) of a [batch, seq] label tensor, for SparseMLM.

    query_rows: flat [batch * seq] indices, the same number per block: each block's masked
    positions first (ascending), then its other positions up to the batch's largest count (or
    `rows_per_block`, if more). slots: which of those rows are masked. targets: their labels.
    `rows` pads slots and targets to at least that many (slot 0, label -100: no loss, no
    gradient). The two paddings give a compiled step the same shapes every step.
    """
    import torch

    B, L = labels.shape
    picked = labels != -100
    counts = picked.sum(1)
    per = min(max(int(counts.max()), rows_per_block, 1), L)
    order = torch.argsort((~picked).to(torch.uint8), dim=1, stable=True)[:, :per]
    query_rows = (order + torch.arange(B, device=labels.device).unsqueeze(1) * L).flatten()
    slots = (torch.arange(per, device=labels.device) < counts.unsqueeze(1)).flatten().nonzero().squeeze(1)
    targets = labels.flatten().index_select(0, query_rows.index_select(0, slots))
    short = rows - len(slots)
    if short > 0:
        slots, targets = torch.cat([slots, slots.new_zeros(short)]), torch.cat([targets, targets.new_full((short,), -100)])
    return query_rows, slots, targets


def masked_cap(tokens: int, p: float, multiple: int) -> int:
    """Room for the masked positions among `tokens` masked with probability `p`: the mean plus six
    standard deviations (exceeded about once in 10^9 draws), rounded up to `multiple`."""
    return int(math.ceil((tokens * p + 6 * math.sqrt(tokens * p * (1 - p))) / multiple) * multiple)


def masked_lm_loss(model, inputs, labels):
    """Mean cross-entropy over the masked positions, computed with the sparse head."""
    layout = masked_layout(labels)
    return sparse_mlm_module(model)(inputs, *layout) / len(layout[2])
