"""pretrain.objective causal_lm: a tiny GPT-style decoder on the session's packed blocks."""

from __future__ import annotations

import math

import pytest
from model_weights import weights
from resume import stopped_after_first_checkpoint

from components.pretrain import checkpoint
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.errors import UserError

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
PARAMS = {"objective": "causal_lm", "model": TINY, "batch_size": 8, "learning_rate": 3e-3, "seed": 5, "log_every": 100, "threads": 1, "checkpoint_every": 0}


def config(**overrides) -> PretrainConfig:
    return PretrainConfig.from_params({**PARAMS, **overrides}, "pretrain")


def test_chunked_cross_entropy_equals_the_dense_loss_and_gradients():
    import torch
    import torch.nn.functional as F

    from components.objectives.causal_lm import chunked_cross_entropy

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=g, requires_grad=True)
    weight = torch.randn(37, 16, generator=g, requires_grad=True)
    targets = torch.randint(37, (50,), generator=g)
    targets[::9] = -100  # ignored positions stay ignored in every chunk
    dense = F.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
    dh, dw = torch.autograd.grad(dense, (hidden, weight))
    chunked = chunked_cross_entropy(hidden, weight, targets, rows=7)  # 8 chunks, the last one short
    ch, cw = torch.autograd.grad(chunked, (hidden, weight))
    assert torch.allclose(chunked, dense, rtol=1e-5)
    assert torch.allclose(ch, dh, atol=1e-5) and torch.allclose(cw, dw, atol=1e-5)
    with torch.no_grad():  # the held-out score: the loss alone, the same value
        assert torch.allclose(chunked_cross_entropy(hidden, weight, targets, rows=7), dense, rtol=1e-5)
    twice = chunked_cross_entropy(hidden, weight, targets, rows=7) * 2.5  # the backward scales the stored gradients
    assert torch.allclose(torch.autograd.grad(twice, weight)[0], 2.5 * dw, atol=1e-5)


def test_chunked_cross_entropy_under_bf16_autocast_matches_the_autocast_dense_loss():
    import torch
    import torch.nn.functional as F

    from components.objectives.causal_lm import chunked_cross_entropy

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(64, 32, generator=g, requires_grad=True)
    weight = (0.1 * torch.randn(45, 32, generator=g)).requires_grad_()
    targets = torch.randint(45, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum")
        chunked = chunked_cross_entropy(hidden, weight, targets, rows=10)
    dh, dw = torch.autograd.grad(dense, (hidden, weight))
    ch, cw = torch.autograd.grad(chunked, (hidden, weight))
    assert chunked.dtype == torch.float32 and ch.dtype == cw.dtype == torch.float32
    assert torch.allclose(chunked, dense, rtol=1e-3)
    # bf16 matmuls on both sides (the dense weight gradient also rounds its sum over rows to bf16)
    assert torch.allclose(ch, dh, rtol=2e-2, atol=2e-2) and torch.allclose(cw, dw, rtol=2e-2, atol=2e-2)


def test_loss_falls_and_heldout_perplexity_is_reported(clm_cleaned_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "clm"
    metrics = pretrain(clm_cleaned_dir, out, config(max_steps=40), checkpoint_dir=tmp_path / "ckpt")
    losses = [h["loss"] for h in artifacts.read_json(out / artifacts.HISTORY)]
    vocab = len(AutoTokenizer.from_pretrained(out))
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert abs(losses[0] - math.log(vocab)) < 1.0  # a fresh model guesses about uniformly
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 1.0, f"loss did not fall: {first:.3f} -> {last:.3f}"
    ppl = metrics["pretrain/heldout_perplexity"]
    assert ppl == pytest.approx(math.exp(metrics["pretrain/heldout_loss"])) and 1 < ppl < vocab / 4
    assert metrics["pretrain/mfu"] > 0 and metrics["pretrain/params"] > 0

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "gpt2" and (model.config.n_embd, model.config.n_layer) == (32, 2)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.eos_token_id == tok.sep_token_id and model.config.pad_token_id == tok.pad_token_id


def test_an_interrupted_run_resumes_to_identical_weights(clm_cleaned_dir, tmp_path, monkeypatch):
    import torch

    pretrain(clm_cleaned_dir, tmp_path / "straight", config(max_steps=12), checkpoint_dir=tmp_path / "ckpt-a")
    stopped_after_first_checkpoint(monkeypatch, lambda: pretrain(clm_cleaned_dir, tmp_path / "resumed", config(max_steps=12, checkpoint_every=5), checkpoint_dir=tmp_path / "ckpt-b"))
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "ckpt-b")) == 5 and not (tmp_path / "resumed").exists()
    pretrain(clm_cleaned_dir, tmp_path / "resumed", config(max_steps=12, checkpoint_every=5), checkpoint_dir=tmp_path / "ckpt-b")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [artifacts.read_json(tmp_path / n / artifacts.HISTORY) for n in ("straight", "resumed")]
    assert history[0] == history[1]


def test_flop_formula_counts_what_the_step_computes(clm_cleaned_dir):
    """causal_lm.train_flops against torch's FlopCounterMode on one step (the chunked loss
    recomputes nothing: its gradient matmuls run in the forward pass, where the counter sees them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoTokenizer

    from components.objectives import causal_lm
    from components.shared.modeling import ModelSizes

    tok = AutoTokenizer.from_pretrained(clm_cleaned_dir / artifacts.TOKENIZER_DIR)
    # dropout > 0 keeps SDPA on its math path on a CPU, whose matmuls the counter sees
    model = causal_lm.build_model(ModelSizes.model_validate({**TINY, "dropout": 0.1}), tok).train()
    ids = torch.randint(5, len(tok), (4, 32), generator=torch.Generator().manual_seed(0))
    inputs, labels, n = causal_lm.Batches(tok, None)(ids)
    with FlopCounterMode(display=False) as counter:
        causal_lm.step_module(model)(*causal_lm.micro_batch(inputs, labels, None)).backward()
    formula = causal_lm.train_flops(ids.numel(), n, 32, model.config)
    assert formula <= counter.get_total_flops() <= 1.02 * formula


def test_an_unknown_objective_is_one_line_naming_the_known_ones():
    with pytest.raises(UserError, match="unknown objective 'gpt'.*masked_lm, causal_lm") as info:
        PretrainConfig.from_params({"objective": "gpt"}, "pretrain")
    assert "\n" not in str(info.value) and "pretrain.objective" in str(info.value)


def test_two_gloo_processes_and_accumulation_match_one_process(clm_cleaned_dir, tmp_path):
    """The engine's DDP and accumulation guarantees hold for the causal objective too (see test_ddp)."""
    from model_weights import max_diff

    runs = {"one": {}, "two": {"nproc": 2}, "accum": {"grad_accum": 4}}
    for name, extra in runs.items():
        pretrain(clm_cleaned_dir, tmp_path / name, config(max_steps=6, batch_size=16, model={**TINY, "dropout": 0.0}, **extra), checkpoint_dir=tmp_path / f"ck-{name}")
    one = weights(tmp_path / "one")
    assert max_diff(one, weights(tmp_path / "two")) < 1e-4 and max_diff(one, weights(tmp_path / "accum")) < 1e-4
    losses = [[h["loss"] for h in artifacts.read_json(tmp_path / n / artifacts.HISTORY)] for n in runs]
    assert max(abs(x - y) for x, y in zip(losses[0], losses[1])) < 1e-4


def test_the_decoder_fine_tunes_into_a_last_token_classifier_and_evaluate_scores_it(clm_cleaned_dir, tmp_path):
    """finetune's classifier from the decoder pools the last non-pad token (right padding changes
    nothing), and evaluate's held-out perplexity is the objective's, the one pretrain reported."""
    import torch

    from components.evaluate.evaluate import EvaluateConfig, heldout_perplexity
    from components.finetune.finetune import FinetuneConfig, build_classifier
    from components.shared.modeling import load_tokenizer

    metrics = pretrain(clm_cleaned_dir, tmp_path / "clm", config(max_steps=5), checkpoint_dir=tmp_path / "ckpt")
    model = build_classifier(tmp_path / "clm", FinetuneConfig.from_params({}, "finetune")).eval()
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    tok = load_tokenizer(str(tmp_path / "clm"))
    ids = tok("a wonderful and moving film")["input_ids"]
    pad = tok.pad_token_id
    assert model.config.pad_token_id == pad and pad not in ids
    batch = torch.tensor([ids + [pad] * 3, ids[:-2] + [ids[-1]] + [pad] * 4])
    with torch.no_grad():
        padded = model(input_ids=batch, attention_mask=(batch != pad).long()).logits
        alone = model(input_ids=torch.tensor([ids])).logits
    assert torch.allclose(padded[0], alone[0], atol=1e-5) and not torch.allclose(padded[1], alone[0], atol=1e-5)
    ppl = heldout_perplexity(tmp_path / "clm", clm_cleaned_dir, EvaluateConfig(max_heldout_blocks=256, threads=1))
    assert ppl == pytest.approx(metrics["pretrain/heldout_perplexity"], rel=1e-4)


def test_bf16_autocast_trains_with_the_chunked_loss(clm_cleaned_dir, tmp_path):
    """bf16 autocast (a GPU's default, here on the CPU): the checkpointed chunks recompute under the
    same autocast, and the loss stays close to float32's."""
    runs = {p: pretrain(clm_cleaned_dir, tmp_path / p, config(max_steps=4, precision=p), checkpoint_dir=tmp_path / f"ck-{p}") for p in ("fp32", "bf16")}
    fp32, bf16 = ([h["loss"] for h in artifacts.read_json(tmp_path / p / artifacts.HISTORY)] for p in runs)
    assert all(math.isfinite(x) for x in bf16) and fp32 != bf16
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.1


def test_layer_decay_reaches_the_decoder_layers(clm_cleaned_dir):
    """finetune.layer_decay on a GPT-2 classifier: embeddings lowest, layer i of L at L - i, the head on top."""
    from transformers import AutoTokenizer

    from components.objectives import causal_lm
    from components.shared.modeling import ModelSizes
    from components.shared.training import layer_depth

    model = causal_lm.build_model(ModelSizes.model_validate(TINY), AutoTokenizer.from_pretrained(clm_cleaned_dir / artifacts.TOKENIZER_DIR))
    depths = {name: layer_depth(name, 2) for name, _ in model.named_parameters()}
    assert depths["transformer.wte.weight"] == depths["transformer.wpe.weight"] == 3
    assert depths["transformer.h.0.attn.c_attn.weight"] == 2 and depths["transformer.h.1.mlp.c_fc.weight"] == 1
    assert depths["transformer.ln_f.weight"] == 0
