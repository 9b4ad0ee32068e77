"""bench.init_probe: the initial-weight changes it measures, on the tiny real corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.init_probe import best_probe, features, initialise
from components.objectives.masked_lm import heldout_loss
from components.shared import artifacts
from components.shared.modeling import ModelSizes, build_mlm
from components.shared.shards import open_blocks


@pytest.fixture(scope="module")
def tokenizer(cleaned_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)


def fresh(tokenizer, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return build_mlm(ModelSizes(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=64), tokenizer)


def test_unigram_bias_starts_the_masked_lm_at_the_unigram_loss(cleaned_dir, tokenizer):
    import torch

    blocks = open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN)
    ids = blocks.take(np.arange(len(blocks)))
    counts = np.bincount(ids.ravel(), minlength=len(tokenizer)) + 1.0
    p = counts / counts.sum()
    entropy = float(-(p * np.log(p)).sum())
    held = torch.from_numpy(ids[:16]).long()
    plain, biased = fresh(tokenizer), fresh(tokenizer)
    initialise(biased, blocks, {"bias"})
    plain_loss, biased_loss = heldout_loss(plain, tokenizer, held, seed=1), heldout_loss(biased, tokenizer, held, seed=1)
    assert plain_loss == pytest.approx(math.log(len(tokenizer)), abs=0.3)  # a fresh head: about uniform
    assert biased_loss < plain_loss - 0.5  # the corpus is Zipfian: the unigram guess is far better
    assert biased_loss == pytest.approx(entropy, abs=0.75)  # masked tokens are the corpus's own, less specials


def test_sinusoidal_positions_replace_the_random_ones_at_the_token_scale(cleaned_dir, tokenizer):
    model = fresh(tokenizer)
    initialise(model, open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN), {"sin"})
    pe = model.bert.embeddings.position_embeddings.weight.detach().numpy()
    scale = model.config.initializer_range * math.sqrt(2)
    assert pe[0, 0::2] == pytest.approx(0.0, abs=1e-7)  # sin(0)
    assert pe[0, 1::2] == pytest.approx(scale, rel=1e-5)  # cos(0)
    assert pe[5, 0] == pytest.approx(scale * math.sin(5.0), rel=1e-5)
    assert float(np.sqrt((pe**2).mean())) == pytest.approx(model.config.initializer_range, rel=0.05)


def test_linear_probe_reads_a_feature_that_carries_the_label_and_not_one_that_does_not(tokenizer):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    signal = np.c_[y + rng.normal(0, 0.3, 400), rng.normal(size=(400, 3))]
    noise = rng.normal(size=(400, 4))
    assert best_probe(signal[:300], y[:300], signal[300:], y[300:]) > 0.9
    assert best_probe(noise[:300], y[:300], noise[300:], y[300:]) < 0.7
    model = fresh(tokenizer).bert.eval()
    emb, last = features(model, tokenizer, ["a short one", "a rather longer sentence than the first"])
    assert emb.shape == last.shape == (2, 32)
    assert not np.allclose(emb, last)
