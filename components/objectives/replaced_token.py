"""Replaced-token detection (ELECTRA, Clark et al. 2020): what the engine asks of it.

A small masked-LM generator fills the masked positions of each block with tokens sampled from its
own softmax; the discriminator, the model that is kept, reads the filled-in block and predicts for
EVERY position whether its token is the original or a replacement. Masked LM learns from the ~15%
of positions it predicts; the discriminator's loss covers all of them, which is why ELECTRA beats
masked LM at the same compute, most clearly at small sizes (the paper's ELECTRA-Small).

- Masking: plain masked LM's (`Masker`: `mlm_probability` of the non-special tokens, 80% [MASK],
  10% random, 10% kept; ELECTRA's own code uses 85% [MASK] and 15% kept), same seed.
- Generator: an `ElectraForMaskedLM` of 1/`GENERATOR_SCALE` the discriminator's width, feed-forward
  and heads, as deep (the paper: generators 1/4 to 1/2 the discriminator's size work best). It
  shares the token, position and type embeddings with the discriminator (ELECTRA's embedding
  sharing; its `embeddings_project` maps them to its narrower width) and its output layer is tied
  to them. Its loss is the cross-entropy at the masked positions only, the vocabulary head run on
  those rows alone, as masked LM's sparse head.
- Sampling: each masked position takes the token where the generator's cumulative softmax first
  reaches a uniform number drawn on the host from a seeded generator of its own (inverse-CDF
  sampling: one number per position, in the objective's state, so every rank samples the same
  tokens and a resumed run the ones it would have). No gradient flows through the samples. A
  sample that equals the original counts as original, as in ELECTRA.
- Discriminator: an `ElectraForPreTraining` of the preset's sizes (embedding size = hidden size,
  so its encoder is BERT's); binary cross-entropy at every position of the block (packed blocks
  have no padding).
- Loss: generator mean + `DISC_WEIGHT` x discriminator mean (the paper's lambda = 50). The engine
  divides by the masked count, so each row's discriminator sum is weighted by 50 x masked / tokens.
  Both means are logged beside the total (`generator_mlm`, `rtd` in history.json).

What pretrain saves is the discriminator, `model_type` 'electra': finetune's
`AutoModelForSequenceClassification` loads it as an `ElectraForSequenceClassification` (its head,
dense + gelu on [CLS], is new; the RTD head is dropped). The generator goes to `generator/` beside
it. The held-out score (pretrain's and evaluate's) is the generator's masked-LM cross-entropy under
plain masked LM's held-out masks, so it compares directly with a masked-LM run's; the discriminator
has no perplexity of its own.
"""

from __future__ import annotations

import functools
from pathlib import Path

from components.objectives.masked_lm import PACKING, Masker, masked_cap, mlm_perplexity  # noqa: F401 (PACKING is part of the interface)

DESCRIPTION = "replaced-token-detection (ELECTRA) pretraining"
MODEL_TYPES = ("electra",)  # the saved discriminator's config.model_type: how evaluate finds the objective
CARD = {
    "architecture": "ELECTRA discriminator (BERT-shaped encoder)",
    "pretraining": "replaced-token-detection (ELECTRA) pretraining against a 1/4-width masked-LM generator",
    "perplexity": "generator masked-LM",
}  # model-card text
GENERATOR_SCALE = 4  # generator width, feed-forward and heads = the discriminator's / 4 (the paper's 1/4-1/2)
DISC_WEIGHT = 50.0  # lambda of the paper: loss = generator MLM + 50 x discriminator BCE (means)
GENERATOR_DIR = "generator"  # the generator's folder inside the saved model's
PARTS = ("generator_mlm", "rtd")  # the loss's two means, logged beside it


def _configs(sizes, tokenizer):
    """(discriminator, generator) ElectraConfigs of the preset's sizes; one embedding size for both."""
    from transformers import ElectraConfig

    common = {
        "vocab_size": len(tokenizer),
        "embedding_size": sizes.hidden_size,  # the discriminator's width: no projection in it; the generator projects down
        "num_hidden_layers": sizes.num_layers,
        "hidden_dropout_prob": sizes.dropout,
        "attention_probs_dropout_prob": sizes.dropout,
        "max_position_embeddings": sizes.max_position,
        "pad_token_id": tokenizer.pad_token_id,
        "attn_implementation": "sdpa",  # PyTorch's fused attention kernels, as the masked-LM encoder uses
    }
    disc = ElectraConfig(**common, hidden_size=sizes.hidden_size, num_attention_heads=sizes.num_heads, intermediate_size=sizes.intermediate_size)
    return disc, ElectraConfig(**common, **generator_sizes(disc))


def generator_sizes(disc) -> dict:
    """The generator's width, heads and feed-forward from the discriminator's config."""
    hidden = max(1, disc.hidden_size // GENERATOR_SCALE)
    heads = max(1, disc.num_attention_heads // GENERATOR_SCALE)
    while hidden % heads:
        heads -= 1
    return {"hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": max(1, disc.intermediate_size // GENERATOR_SCALE)}


@functools.cache  # built on first use: torch is not imported with this module
def _pair_class():
    import torch

    class ElectraPair(torch.nn.Module):
        """The discriminator and its generator, embeddings shared: one module for the optimizer, the
        checkpoint and DDP. `config` is the discriminator's; `save_pretrained(dir)` writes the
        discriminator to `dir` and the generator to `dir/generator`."""

        def __init__(self, discriminator, generator):
            super().__init__()
            generator.electra.embeddings = discriminator.electra.embeddings
            generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight  # tied again, to the shared table
            self.discriminator, self.generator = discriminator, generator

        @property
        def config(self):
            return self.discriminator.config

        def save_pretrained(self, out_dir) -> None:
            self.discriminator.save_pretrained(out_dir)
            self.generator.save_pretrained(Path(out_dir) / GENERATOR_DIR)

    return ElectraPair


def build_model(sizes, tokenizer):
    """A randomly initialised discriminator and generator of the preset's sizes."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    disc, gen = _configs(sizes, tokenizer)
    return _pair_class()(ElectraForPreTraining(disc), ElectraForMaskedLM(gen))


def load_model(init_from: str):
    """The pair from a folder this objective saved (discriminator, and its generator in `generator/`)."""
    from transformers import AutoConfig, ElectraForMaskedLM, ElectraForPreTraining

    from components.shared.errors import UserError
    from components.shared.modeling import _from_checkpoint

    config = _from_checkpoint(AutoConfig, init_from)
    if config.model_type not in MODEL_TYPES or not (Path(init_from) / GENERATOR_DIR / "config.json").is_file():
        raise UserError(f"init_from {init_from!r} is not an ELECTRA discriminator with its generator in {GENERATOR_DIR}/: continue a folder pretrain.objective replaced_token wrote")
    disc = _from_checkpoint(ElectraForPreTraining, init_from, attn_implementation="sdpa")
    return _pair_class()(disc, _from_checkpoint(ElectraForMaskedLM, str(Path(init_from) / GENERATOR_DIR), attn_implementation="sdpa"))


def training_blocks(blocks, tokenizer, config):
    """What the engine draws from: the packed blocks themselves."""
    return blocks


class Batches:
    """Batch preparation: inputs (the masked blocks, one uniform number per position for the
    sampling), labels (the original blocks, the masked-LM labels, each row's discriminator weight);
    n_targets = masked positions."""

    def __init__(self, tokenizer, config):
        import torch

        self.masker = Masker(tokenizer, config.mlm_probability, config.seed + 1)  # plain masked LM's masks
        self.g = torch.Generator().manual_seed(config.seed + 2)

    def __call__(self, ids):
        import torch

        inputs, labels = self.masker(ids)
        u = torch.rand(ids.shape, generator=self.g)
        n = int((labels != -100).sum())
        weight = torch.full((len(ids),), DISC_WEIGHT * n / ids.numel(), dtype=torch.float32)  # per row: the engine slices rows
        return (inputs, u), (ids, labels, weight), n

    def state_dict(self) -> dict:
        return {**self.masker.state_dict(), "sample": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.masker.load_state_dict(state)
        self.g.set_state(state["sample"])


def micro_batch(inputs, labels, fixed):
    """The step module's arguments: masked and original blocks, the masked rows (flat indices),
    their targets and uniforms, padded to `fixed[1]` rows for a compiled step (row 0, the never
    masked [CLS]: target -100, no loss), and the rows' weights."""
    import torch

    (masked, u), (ids, mlm, weight) = inputs, labels
    rows = (mlm != -100).flatten().nonzero().squeeze(1)
    targets, draws = mlm.flatten().index_select(0, rows), u.flatten().index_select(0, rows)
    short = (fixed[1] if fixed else 0) - len(rows)
    if short > 0:
        rows, targets, draws = torch.cat([rows, rows.new_zeros(short)]), torch.cat([targets, targets.new_full((short,), -100)]), torch.cat([draws, draws.new_zeros(short)])
    return masked, ids, rows, targets, draws, weight


def fixed_shapes(block_size: int, micro: int, config):
    return 0, masked_cap(micro * block_size, config.mlm_probability, 64)


def step_module(model):
    """A module whose forward is the summed generator cross-entropy at the masked rows plus the
    weighted discriminator BCE at every position; a module (not a function) so that DDP can wrap
    it. `take_parts()` gives the two sums since the last call (the engine logs them)."""
    import torch
    import torch.nn.functional as F

    class ReplacedTokenLoss(torch.nn.Module):
        part_names = PARTS

        def __init__(self, pair):
            super().__init__()
            self.pair, self.sums = pair, None

        def forward(self, masked, ids, rows, targets, draws, weight):
            gen, disc = self.pair.generator, self.pair.discriminator
            hidden = gen.electra(input_ids=masked).last_hidden_state.flatten(0, 1).index_select(0, rows)
            logits = gen.generator_lm_head(gen.generator_predictions(hidden)).float()
            mlm = F.cross_entropy(logits, targets, reduction="sum")
            flat = ids.flatten()
            with torch.no_grad():
                sampled = sample(logits, draws)
                sampled = torch.where(targets != -100, sampled, flat.index_select(0, rows))  # padding rows keep their token
                replaced = flat.index_copy(0, rows, sampled).view_as(ids)
            out = disc.discriminator_predictions(disc.electra(input_ids=replaced).last_hidden_state).float()
            bce = F.binary_cross_entropy_with_logits(out, (replaced != ids).float(), reduction="none")
            rtd = (bce.sum(1) * weight).sum()
            if not torch.compiler.is_compiling():
                part = torch.stack([mlm.detach(), rtd.detach() / DISC_WEIGHT])  # / n_targets: the two means
                self.sums = part if self.sums is None else self.sums + part
            return mlm + rtd

        def take_parts(self):
            sums, self.sums = self.sums, None
            return sums

    return ReplacedTokenLoss(model)


def sample(logits, draws):
    """Token ids from the softmax of `logits` (rows), by inverse CDF at the uniforms `draws`."""
    import torch

    cdf = logits.detach().float().softmax(-1).cumsum(-1)
    return torch.searchsorted(cdf, draws.unsqueeze(1).to(cdf.dtype)).squeeze(1).clamp(max=logits.shape[1] - 1)


def heldout_loss(model, tokenizer, ids, seed: int, p: float = 0.15) -> float:
    """The generator's mean cross-entropy over the masked positions of held-out blocks, under plain
    masked LM's held-out masks (`seed`): the number a masked-LM run reports."""
    import torch

    from components.objectives.masked_lm import masked_layout

    gen = model.generator
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        inputs, labels = Masker(tokenizer, p, seed)(ids.cpu())
        rows, slots, targets = masked_layout(labels.to(device))
        hidden = gen.electra(input_ids=inputs.to(device)).last_hidden_state.flatten(0, 1).index_select(0, rows).index_select(0, slots)
        logits = gen.generator_lm_head(gen.generator_predictions(hidden)).float()
        return float(torch.nn.functional.cross_entropy(logits, targets))


def heldout_perplexity(pretrained_dir, blocks, batch_size: int, mlm_probability: float, seed: int) -> float:
    """evaluate's score: the generator's masked-LM perplexity, computed as masked LM's is."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    generator = AutoModelForMaskedLM.from_pretrained(Path(pretrained_dir) / GENERATOR_DIR)
    return mlm_perplexity(generator, AutoTokenizer.from_pretrained(pretrained_dir), blocks, batch_size, mlm_probability, seed)


def train_flops(tokens: int, targets: int, seq_len: int, model_config) -> float:
    """Forward + backward (3x forward) matmul FLOPs: the discriminator's layers and RTD head at
    every token; the generator's projection and layers at every token, its head at the targets."""
    from components.shared.flops import forward_flops

    c, g = model_config, generator_sizes(model_config)
    h, e, v, hg = c.hidden_size, c.embedding_size, c.vocab_size, g["hidden_size"]
    disc = forward_flops(tokens, 0, seq_len, h, c.num_hidden_layers, c.intermediate_size, v) + tokens * (2 * h * h + 2 * h)
    gen = forward_flops(tokens, 0, seq_len, hg, c.num_hidden_layers, g["intermediate_size"], v) + tokens * 2 * e * hg + targets * (2 * hg * e + 2 * e * v)
    return 3.0 * (disc + gen)
