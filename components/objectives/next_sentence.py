"""Next-sentence prediction: masked LM with BERT's second loss (`pretrain.nsp: true`).

Each training example is a segment pair [CLS] A [SEP] B [SEP], token types 0 then 1, padded with
[PAD] to the block size (an attention mask keeps the padding out). B is, for half of the pairs, the
segment that follows A in its document (label 0, transformers' "is next") and, for the other half,
a segment of another document (label 1). The loss is the masked-LM loss (mean over the masked
positions, masks drawn as in plain masked LM) plus the NSP loss (mean over the pairs), as in
transformers' `BertForPreTraining`.

The segments come from the masked-LM packing, unchanged: the training blocks hold the documents in
corpus order with [SEP] after each, so reading the block bodies back to back gives the documents
and their boundaries. Each document is cut into segments of at most (block_size - 3) // 2 tokens,
at a sentence end (".", "!", "?") in the second half of the window where there is one, so two
segments and their three special tokens fit one block. Every segment with a successor in its
document is an A twice: once with its successor, once with a segment of another document drawn
from a generator seeded by `pretrain.seed`. The pairs are therefore fixed for the run (as BERT's
create_pretraining_data fixed them); the engine's block order shuffles them every epoch, so its
checkpoint already resumes them exactly.

The model is a `BertForPreTraining` (encoder, pooler, MLM head, NSP head `cls.seq_relationship`).
Its folder loads into `AutoModelForMaskedLM` (evaluate's perplexity; the pooler and NSP head are
left out) and into `AutoModelForSequenceClassification` (finetune; the NSP head is left out, and the
pooler is the one NSP trained, where plain masked LM leaves it randomly initialised). The held-out
score is plain masked LM's on the held-out blocks, so the two compare directly.
"""

from __future__ import annotations

import numpy as np

from components.objectives.masked_lm import CARD, MODEL_TYPES, PACKING, Masker, heldout_loss, heldout_perplexity, masked_cap  # noqa: F401 (the interface)
from components.shared.errors import UserError

DESCRIPTION = "masked-LM + next-sentence-prediction pretraining"
SENTENCE_ENDS = (".", "!", "?")  # tokens a segment prefers to end on
SCAN_BLOCKS = 4096  # blocks read at a time while finding the documents and sentences


def build_model(sizes, tokenizer):
    """A randomly initialised BertForPreTraining with the masked-LM model's configuration."""
    from transformers import BertForPreTraining

    from components.shared.modeling import build_mlm

    return BertForPreTraining(build_mlm(sizes, tokenizer).config)


def load_model(init_from: str):
    """BertForPreTraining from a BERT checkpoint; heads it lacks (NSP, pooler) are initialised fresh."""
    from transformers import BertForPreTraining
    from transformers.utils import logging as hf_logging

    from components.shared.modeling import _from_checkpoint, _require_bert

    _require_bert(init_from)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: cls.seq_relationship": expected
    try:
        return _from_checkpoint(BertForPreTraining, init_from, attn_implementation="sdpa")
    finally:
        hf_logging.set_verbosity(verbosity)


def training_blocks(blocks, tokenizer, config):
    """The segment pairs of the packed training blocks, as the engine draws them."""
    return SegmentPairs(blocks, tokenizer, config.seed)


class SegmentPairs:
    """The run's NSP examples, read from packed blocks: `len()` pairs, `take(idx)` gives int32
    [k, block_size + 1] rows, the pair's ids ([CLS] A [SEP] B [SEP] [PAD]...) then its label."""

    def __init__(self, blocks, tokenizer, seed: int):
        self.blocks, self.block_size = blocks, blocks.block_size
        self.body = blocks.block_size - 1  # the masked-LM packing: [CLS] + the stream
        self.cls, self.sep, self.pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        self.max_segment = (self.block_size - 3) // 2
        enders = [i for i in tokenizer.convert_tokens_to_ids(list(SENTENCE_ENDS)) if i != tokenizer.unk_token_id]
        seps, ends, total = self._scan(np.array(enders, dtype=np.int64))
        self.start, self.length, self.doc = segments(seps, ends, total, self.max_segment)
        self.first = np.flatnonzero(self.doc[:-1] == self.doc[1:])  # segments with a successor: the A's
        if not len(self.first) or self.doc[-1] == self.doc[0]:
            raise UserError("next-sentence prediction needs at least two documents, one of them longer than a segment: add text or set pretrain.nsp false")
        self.other = _other_documents(self.doc, self.first, np.random.default_rng(seed))

    def _scan(self, enders: np.ndarray):
        """Stream positions of every [SEP] and sentence end, and the stream's length."""
        seps, ends = [], []
        for first in range(0, len(self.blocks), SCAN_BLOCKS):
            rows = self.blocks.take(np.arange(first, min(first + SCAN_BLOCKS, len(self.blocks))))[:, 1:].ravel()
            seps.append(np.flatnonzero(rows == self.sep) + first * self.body)
            ends.append(np.flatnonzero(np.isin(rows, enders)) + first * self.body)
        return np.concatenate(seps), np.concatenate(ends), len(self.blocks) * self.body

    def __len__(self) -> int:
        return 2 * len(self.first)

    def pair(self, i: int) -> tuple[int, int, int]:
        """(segment A, segment B, label) of pair `i`: even pairs are next (0), odd ones random (1)."""
        a = self.first[i // 2]
        return (a, a + 1, 0) if i % 2 == 0 else (a, self.other[i // 2], 1)

    def tokens(self, segment: int) -> np.ndarray:
        positions = self.start[segment] + np.arange(self.length[segment])
        rows = np.unique(positions // self.body)
        body = self.blocks.take(rows)[:, 1:]
        return body[np.searchsorted(rows, positions // self.body), positions % self.body]

    def take(self, idx) -> np.ndarray:
        out = np.full((len(idx), self.block_size + 1), self.pad, dtype=np.int32)
        for row, i in enumerate(np.asarray(idx).reshape(-1)):
            a, b, label = self.pair(int(i))
            ids = np.concatenate([[self.cls], self.tokens(a), [self.sep], self.tokens(b), [self.sep]])
            out[row, : len(ids)] = ids
            out[row, -1] = label
        return out


def segments(seps: np.ndarray, ends: np.ndarray, total: int, max_len: int):
    """(start, length, document) of each segment of the stream: documents end at the [SEP]s (the
    stream's tail is one more), each cut into runs of at most `max_len` tokens, ending after a
    sentence end in the run's second half where there is one."""
    doc_starts = np.concatenate([[0], seps + 1])
    doc_ends = np.concatenate([seps, [total]])
    start, length, doc = [], [], []
    for d, (s, e) in enumerate(zip(doc_starts.tolist(), doc_ends.tolist())):
        while s < e:
            cut = min(s + max_len, e)
            if cut < e:  # the last sentence end inside the window's second half, if any
                j = np.searchsorted(ends, cut - 1, side="right") - 1
                if j >= 0 and ends[j] >= s + max_len // 2:
                    cut = int(ends[j]) + 1
            start.append(s), length.append(cut - s), doc.append(d)
            s = cut
    return np.array(start, dtype=np.int64), np.array(length, dtype=np.int64), np.array(doc, dtype=np.int64)


def _other_documents(doc: np.ndarray, first: np.ndarray, rng) -> np.ndarray:
    """For each A, a random segment of any other document (drawn again where it hit A's own)."""
    other = rng.integers(len(doc), size=len(first))
    clash = doc[other] == doc[first]
    while clash.any():
        other[clash] = rng.integers(len(doc), size=int(clash.sum()))
        clash = doc[other] == doc[first]
    return other


class Batches:
    """Batch preparation: BERT's masking of the pairs; inputs (ids, token types, attention mask),
    labels (masked-LM labels, NSP labels, each pair's NSP weight); n_targets = masked positions."""

    def __init__(self, tokenizer, config):
        self.masker = Masker(tokenizer, config.mlm_probability, config.seed + 1)
        self.sep, self.pad = tokenizer.sep_token_id, tokenizer.pad_token_id

    def __call__(self, rows):
        import torch

        ids, nsp = rows[:, :-1], rows[:, -1]
        types, attention = token_types(ids, self.sep), (ids != self.pad).long()
        inputs, labels = self.masker(ids)
        n = int((labels != -100).sum())
        # The engine divides the summed loss by n: weighting each pair's NSP loss by n / pairs
        # makes the step's loss the masked-LM mean plus the NSP mean, however the batch is split.
        weight = torch.full((len(rows),), n / len(rows), dtype=torch.float32)
        return (inputs, types, attention), (labels, nsp, weight), n

    def state_dict(self) -> dict:
        return self.masker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.masker.load_state_dict(state)


def token_types(ids, sep: int):
    """1 from the token after the first [SEP] up to the second [SEP] (B and its [SEP]), else 0."""
    is_sep = (ids == sep).long()
    return ((is_sep.cumsum(1) - is_sep) == 1).long()


def step_module(model):
    """A module whose forward is the summed masked-LM cross-entropy at the masked positions plus
    the weighted NSP cross-entropy of the pairs; a module (not a function) so that DDP can wrap it."""
    import torch
    import torch.nn.functional as F

    class PretrainingLoss(torch.nn.Module):
        def __init__(self, pre):
            super().__init__()
            self.pre = pre

        def forward(self, inputs, types, attention, rows, targets, nsp, weight):
            out = self.pre.bert(input_ids=inputs, token_type_ids=types, attention_mask=attention)
            hidden = out.last_hidden_state.flatten(0, 1).index_select(0, rows)  # the vocabulary head at the masked rows only
            mlm = F.cross_entropy(self.pre.cls.predictions(hidden).float(), targets, reduction="sum")
            pairs = F.cross_entropy(self.pre.cls.seq_relationship(out.pooler_output).float(), nsp, reduction="none")
            return mlm + (pairs * weight).sum()

    return PretrainingLoss(model)


def micro_batch(inputs, labels, fixed):
    """The step module's arguments: the inputs, the masked rows and their targets (padded to
    `fixed[1]` rows for a compiled step: row 0, target -100), the NSP labels and weights."""
    import torch

    (ids, types, attention), (mlm, nsp, weight) = inputs, labels
    rows = (mlm != -100).flatten().nonzero().squeeze(1)
    targets = mlm.flatten().index_select(0, rows)
    short = (fixed[1] if fixed else 0) - len(rows)
    if short > 0:
        rows, targets = torch.cat([rows, rows.new_zeros(short)]), torch.cat([targets, targets.new_full((short,), -100)])
    return ids, types, attention, rows, targets, nsp, weight


def fixed_shapes(block_size: int, micro: int, config):
    return 0, masked_cap(micro * block_size, config.mlm_probability, 64)


def train_flops(tokens: int, targets: int, seq_len: int, model_config) -> float:
    """Forward + backward FLOPs: every layer at every position (no sparse last layer here), the MLM
    head at the targets, the pooler and NSP head once per pair."""
    from components.shared import flops

    h = model_config.hidden_size
    return flops.train_flops(tokens, targets, seq_len, model_config, sparse_last_layer=False) + 3 * (tokens // seq_len) * (2 * h * h + 4 * h)
