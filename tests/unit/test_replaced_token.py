"""pretrain.objective replaced_token: ELECTRA's replaced-token detection on the session's packed
blocks (masked LM's packing), and the discriminator it saves fine-tuned as the classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
from model_weights import max_diff, weights
from resume import stopped_after_first_checkpoint

from components.objectives import replaced_token
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.shards import open_blocks

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
PARAMS = {"objective": "replaced_token", "model": TINY, "batch_size": 16, "learning_rate": 2e-3, "seed": 7, "log_every": 100, "threads": 1, "checkpoint_every": 0}


def config(**overrides) -> PretrainConfig:
    return PretrainConfig.from_params({**PARAMS, **overrides}, "pretrain")


def tokenizer(cleaned_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)


def test_sampling_is_the_inverse_cdf_of_the_generator_softmax():
    import torch

    logits = torch.tensor([[0.2, 0.3, 0.5]]).log().expand(5, 3)
    draws = torch.tensor([0.1, 0.25, 0.45, 0.6, 1.0])
    assert replaced_token.sample(logits, draws).tolist() == [0, 1, 1, 2, 2]


def test_only_masked_positions_change_and_padding_rows_change_nothing(cleaned_dir):
    """The discriminator's input differs from the block at masked positions only; the padded layout
    of a compiled step gives the same loss; the generator is 1/4 of the discriminator, embeddings shared."""
    import torch

    from components.shared.modeling import ModelSizes

    tok = tokenizer(cleaned_dir)
    torch.manual_seed(0)
    model = replaced_token.build_model(ModelSizes.model_validate({**TINY, "dropout": 0.0}), tok)
    gen, disc = model.generator, model.discriminator
    assert gen.config.hidden_size == 8 and gen.config.intermediate_size == 16 and disc.config.model_type == "electra"
    assert gen.electra.embeddings is disc.electra.embeddings and gen.generator_lm_head.weight is disc.electra.embeddings.word_embeddings.weight
    ids = torch.from_numpy(open_blocks(cleaned_dir / artifacts.BLOCKS_TRAIN).take(np.arange(16))).long()
    inputs, labels, n = replaced_token.Batches(tok, config())(ids)
    masked, original, rows, targets, draws, weight = replaced_token.micro_batch(inputs, labels, None)
    assert torch.equal(original, ids) and len(rows) == n and weight[0] == pytest.approx(50 * n / ids.numel())
    with torch.no_grad():
        logits = gen.generator_lm_head(gen.generator_predictions(gen.electra(input_ids=masked).last_hidden_state.flatten(0, 1)[rows]))
    sampled = replaced_token.sample(logits, draws)
    changed = (ids.flatten()[rows] != sampled).nonzero().squeeze(1)
    assert len(changed) > 0.5 * n  # a fresh generator is near uniform: most samples differ from the original
    module = replaced_token.step_module(model)
    with torch.no_grad():
        plain = module(*replaced_token.micro_batch(inputs, labels, None))
        mlm, rtd = (module.take_parts() / n).tolist()
        padded = module(*replaced_token.micro_batch(inputs, labels, replaced_token.fixed_shapes(32, 16, config())))
    assert float(plain) == pytest.approx(float(padded), rel=1e-5) and (module.take_parts() / n).tolist() == pytest.approx([mlm, rtd], rel=1e-5)
    assert abs(mlm - math.log(len(tok))) < 0.5 and abs(rtd - math.log(2)) < 0.1  # a fresh pair: uniform and a coin
    assert float(plain) / n == pytest.approx(mlm + 50 * rtd, rel=1e-5)


def test_loss_falls_and_finetune_and_evaluate_load_the_discriminator(cleaned_dir, tmp_path):
    """Trained on masked LM's blocks (same packing), both parts fall; the saved folder is the ELECTRA
    discriminator (its generator beside it), which finetune's task loads unchanged."""
    import torch

    from components.evaluate.evaluate import EvaluateConfig, heldout_perplexity
    from components.finetune.finetune import FinetuneConfig, build_classifier

    out = tmp_path / "electra"
    metrics = pretrain(cleaned_dir, out, config(max_steps=30), checkpoint_dir=tmp_path / "ckpt")
    history = artifacts.read_json(out / artifacts.HISTORY)
    assert len(history) == 30 and all(math.isfinite(h["loss"]) for h in history)
    first, last = (np.mean([[h["loss"], h["generator_mlm"], h["rtd"]] for h in part], axis=0) for part in (history[:3], history[-3:]))
    assert last[0] < first[0] - 3 and last[1] < first[1] - 0.5 and last[2] < first[2] - 0.05
    assert all(h["loss"] == pytest.approx(h["generator_mlm"] + 50 * h["rtd"], rel=1e-5) for h in history)
    assert metrics["pretrain/heldout_perplexity"] == pytest.approx(math.exp(metrics["pretrain/heldout_loss"])) and metrics["pretrain/mfu"] > 0
    assert metrics["pretrain/heldout_loss"] < math.log(len(tokenizer(cleaned_dir))) - 0.5

    saved = weights(out)
    assert artifacts.read_json(out / "config.json")["model_type"] == "electra" and "discriminator_predictions.dense.weight" in saved
    assert (out / replaced_token.GENERATOR_DIR / "config.json").is_file()
    classifier = build_classifier(out, FinetuneConfig.from_params({}, "finetune"))
    assert type(classifier).__name__ == "ElectraForSequenceClassification"
    assert torch.equal(classifier.electra.embeddings.word_embeddings.weight, saved["electra.embeddings.word_embeddings.weight"])
    assert torch.equal(classifier.electra.encoder.layer[0].output.dense.weight, saved["electra.encoder.layer.0.output.dense.weight"])
    ppl = heldout_perplexity(out, cleaned_dir, EvaluateConfig(max_heldout_blocks=256, threads=1))
    assert 1 < ppl < len(tokenizer(cleaned_dir)) and abs(math.log(ppl) - metrics["pretrain/heldout_loss"]) < 0.3  # the generator's, other masks


def test_an_interrupted_run_resumes_to_identical_weights(cleaned_dir, tmp_path, monkeypatch):
    import torch

    pretrain(cleaned_dir, tmp_path / "straight", config(max_steps=10), checkpoint_dir=tmp_path / "ckpt-a")
    stopped_after_first_checkpoint(monkeypatch, lambda: pretrain(cleaned_dir, tmp_path / "resumed", config(max_steps=10, checkpoint_every=4), checkpoint_dir=tmp_path / "ckpt-b"))
    pretrain(cleaned_dir, tmp_path / "resumed", config(max_steps=10, checkpoint_every=4), checkpoint_dir=tmp_path / "ckpt-b")
    for sub in ("", replaced_token.GENERATOR_DIR):
        a, b = weights(tmp_path / "straight" / sub), weights(tmp_path / "resumed" / sub)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [artifacts.read_json(tmp_path / n / artifacts.HISTORY) for n in ("straight", "resumed")]
    assert history[0] == history[1]


def test_accumulation_gives_the_one_batch_gradient_and_bf16_trains(cleaned_dir, tmp_path):
    """Each row's discriminator weight keeps the loss the two means however the batch is split."""
    runs = {"one": {}, "accum": {"grad_accum": 4}}
    for name, extra in runs.items():
        pretrain(cleaned_dir, tmp_path / name, config(max_steps=3, model={**TINY, "dropout": 0.0}, **extra), checkpoint_dir=tmp_path / f"ck-{name}")
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "accum")) < 1e-5
    histories = [artifacts.read_json(tmp_path / n / artifacts.HISTORY) for n in runs]
    assert all(a[k] == pytest.approx(b[k], rel=1e-5) for a, b in zip(*histories) for k in ("loss", "generator_mlm", "rtd"))
    metrics = pretrain(cleaned_dir, tmp_path / "bf16", config(max_steps=2, precision="bf16"), checkpoint_dir=tmp_path / "ck-bf16")
    assert math.isfinite(metrics["pretrain/final_loss"]) and math.isfinite(metrics["pretrain/heldout_loss"])
