"""pretrain: a tiny real masked-LM run on the packed blocks of the session's corpus."""

from __future__ import annotations

import math

import pytest
from model_weights import weights

from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.errors import UserError

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position": 64}
PNG = b"\x89PNG\r\n\x1a\n"


def short_run(cleaned_dir, out, seed: int, **overrides) -> dict:
    config = PretrainConfig.from_params({"model": TINY, "max_steps": 3, "batch_size": 8, "seed": seed, "log_every": 100, "threads": 1, **overrides}, "pretrain")
    return pretrain(cleaned_dir, out, config)


def test_loss_is_finite_and_falls(mlm_dir):
    history = artifacts.read_json(mlm_dir / artifacts.HISTORY)
    losses = [h["loss"] for h in history]
    assert [h["step"] for h in history] == list(range(1, len(history) + 1)) and len(history) > 10
    assert all(math.isfinite(x) and x > 0 for x in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert all(h["lr"] >= 0 for h in history) and history[-1]["lr"] < max(h["lr"] for h in history)  # decays
    assert (mlm_dir / artifacts.LOSS_CURVE).read_bytes().startswith(PNG)


def test_model_dir_loads_and_fills_a_mask(mlm_dir, cleaned_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    model = AutoModelForMaskedLM.from_pretrained(mlm_dir)
    tok = AutoTokenizer.from_pretrained(mlm_dir)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (32, 1, 2)
    assert model.config.vocab_size == len(tok) == len(AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR))

    fill = pipeline("fill-mask", model=str(mlm_dir))
    out = fill("The director praised a [MASK] performance.", top_k=5)
    assert len(out) == 5
    scores = [o["score"] for o in out]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert all(isinstance(o["token_str"], str) and o["token"] < len(tok) for o in out)
    assert all("[MASK]" not in o["sequence"] for o in out)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(cleaned_dir, tmp_path):
    import torch

    short_run(cleaned_dir, tmp_path / "a", seed=7)
    short_run(cleaned_dir, tmp_path / "b", seed=7)
    short_run(cleaned_dir, tmp_path / "c", seed=8)
    a, b, c = (weights(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    history = [[h["loss"] for h in artifacts.read_json(tmp_path / n / artifacts.HISTORY)] for n in "abc"]
    assert history[0] == history[1] != history[2]


def test_heads_must_divide_hidden_size(cleaned_dir, tmp_path):
    with pytest.raises(UserError, match="hidden_size 30 is not divisible by num_heads 4") as info:
        short_run(cleaned_dir, tmp_path / "out" / "mlm", seed=1, model={**TINY, "hidden_size": 30, "num_heads": 4})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_cleaned_dir_names_the_stage_to_run(tmp_path):
    with pytest.raises(UserError, match="run the clean_tokenize stage first"):
        short_run(tmp_path / "nothing", tmp_path / "mlm", seed=1)
    assert not (tmp_path / "mlm").exists()


def test_masking_is_bert_80_10_10_on_non_special_tokens_and_seeded(cleaned_dir):
    import torch
    from transformers import AutoTokenizer

    from components.objectives.masked_lm import Masker

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    ids = torch.randint(len(tok), (256, 128))
    ids[:, 0] = tok.cls_token_id
    ids[:, 64] = tok.sep_token_id
    inputs, labels = Masker(tok, 0.15, seed=3)(ids)
    picked = labels != -100
    assert not picked[:, 0].any() and not picked[:, 64].any()  # [CLS]/[SEP] are never targets
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(inputs[~picked], ids[~picked])
    share = picked.float().mean().item()
    assert 0.14 < share < 0.16
    as_mask = (inputs[picked] == tok.mask_token_id).float().mean().item()
    kept = (inputs[picked] == ids[picked]).float().mean().item()
    assert 0.78 < as_mask < 0.82 and 0.08 < kept < 0.12  # the rest (~10%) are random tokens
    again_in, again_lab = Masker(tok, 0.15, seed=3)(ids)
    assert torch.equal(again_in, inputs) and torch.equal(again_lab, labels)


def test_sparse_head_loss_equals_the_dense_loss(mlm_dir):
    import torch
    from transformers import AutoModelForMaskedLM

    from components.objectives.masked_lm import masked_lm_loss

    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(5, model.config.vocab_size, (4, 32), generator=g)
    labels = torch.where(torch.rand(4, 32, generator=g) < 0.2, inputs, -100)
    with torch.no_grad():
        dense = model(input_ids=inputs, labels=labels).loss
        sparse = masked_lm_loss(model, inputs, labels)
    assert torch.allclose(dense, sparse, atol=1e-5), (dense, sparse)


def test_presets_scale_as_documented():
    from pipelines.config import load_config

    small, gpu = load_config("small").pretrain, load_config("gpu")
    assert (small.model.num_layers, small.model.hidden_size) == (4, 256)
    m, p = gpu.pretrain.model, gpu.pretrain
    assert (m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size) == (768, 12, 12, 3072)  # BERT-base
    assert gpu.clean_tokenize.block_size == 512 <= m.max_position and 28000 <= gpu.clean_tokenize.vocab_size <= 32000
    assert (p.precision, p.device, p.nproc) == ("bf16", "cuda", 8) and p.batch_size // (p.nproc * p.grad_accum) >= 8
    assert load_config("demo").pretrain.compile is False  # compile loses on CPU at these sizes (bench/results)


def test_mfu_is_reported_between_zero_and_one(cleaned_dir, tmp_path):
    metrics = short_run(cleaned_dir, tmp_path / "m", seed=2)
    assert 0 < metrics["pretrain/mfu"] < 1 and metrics["pretrain/model_tflops"] > 0


def test_gpu_check_script_runs_on_the_cpu():
    """bench/gpu_check.py is for a GPU; here its smoke mode proves the script itself works."""
    import json
    import subprocess
    import sys

    from components.shared.settings import code_dir

    # fp32, as the engine runs on CPUs: a CPU without native bf16 (AMD EPYC here) multiplies bf16 square
    # matrices ~50x slower than the autocast step runs, so the bf16 "peak" gave an MFU of 3.2.
    cmd = [sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--steps", "3", "--tiny", "--precision", "fp32"]
    out = subprocess.run(cmd, cwd=code_dir(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["steps"] == 3 and result["tokens_per_s"] > 0 and 0 < result["mfu_measured_matmul"] < 1
    assert result["final_loss"] > 0 and result["mfu_datasheet"] is None  # no datasheet peak for a CPU


def test_sparse_module_gives_the_dense_loss_and_gradients_with_and_without_padding(mlm_dir):
    """The engine computes the head and the last layer's queries, attention output and feed-forward
    at the masked positions only; with pretrain.compile it pads those rows to fixed counts. Loss and
    every gradient must still be the dense model's."""
    import torch
    from transformers import AutoTokenizer

    from components.objectives.masked_lm import masked_cap, masked_layout, sparse_mlm_module
    from components.shared.modeling import ModelSizes, build_mlm

    # Three layers, so that the engine's own loop over the layers before the last is compared too;
    # dropout off, as pretraining runs (pretrain.dropout: 0).
    model = build_mlm(ModelSizes.model_validate({**TINY, "num_layers": 3, "dropout": 0.0}), AutoTokenizer.from_pretrained(mlm_dir)).train()
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(5, model.config.vocab_size, (4, 32), generator=g)
    labels = torch.where(torch.rand(4, 32, generator=g) < 0.15, inputs, -100)
    labels[2] = -100  # a block with nothing masked

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    n = int((labels != -100).sum())
    dense, dense_grads = grads(model(input_ids=inputs, labels=labels).loss)
    module = sparse_mlm_module(model)
    per, rows = min(masked_cap(32, 0.15, 8), 32), masked_cap(inputs.numel(), 0.15, 64)
    for layout in (masked_layout(labels), masked_layout(labels, per, rows)):
        assert len(layout[1]) == len(layout[2]) and int((layout[2] != -100).sum()) == n
        sparse, sparse_grads = grads(module(inputs, *layout) / n)
        assert torch.allclose(dense, sparse, atol=1e-6), (dense, sparse)
        for name, d in dense_grads.items():
            if name.endswith("attention.self.key.bias"):  # exactly zero in theory (softmax is shift-invariant): float noise only
                continue
            s = sparse_grads.get(name, torch.zeros_like(d))
            assert torch.allclose(d, s, atol=1e-6, rtol=1e-4), (name, (d - s).abs().max())
    padded = masked_layout(labels, per, rows)
    assert len(padded[0]) == 4 * per and len(padded[1]) == rows and (padded[2][n:] == -100).all()


def test_compiled_steps_match_eager_ones_and_compile_once(cleaned_dir, tmp_path):
    """pretrain.compile: same losses as eager (up to float order), and the masked rows padded to
    fixed counts, so the varying number of masks per step never triggers a recompile."""
    import torch
    from torch._dynamo.utils import counters

    eager = short_run(cleaned_dir, tmp_path / "eager", seed=5, max_steps=4, log_every=1)
    torch._dynamo.reset()
    counters.clear()
    compiled = short_run(cleaned_dir, tmp_path / "compiled", seed=5, max_steps=4, log_every=1, compile=True)
    frames = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    losses = [[h["loss"] for h in artifacts.read_json(d / artifacts.HISTORY)] for d in (tmp_path / "eager", tmp_path / "compiled")]
    assert len(losses[0]) == len(losses[1]) == 4
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(*losses)), losses
    assert frames == 1, f"{frames} graphs compiled: a step's shapes changed"
    assert eager["pretrain/final_loss"] == pytest.approx(compiled["pretrain/final_loss"], rel=1e-4)


def test_mfu_formula_counts_what_the_engine_computes(cleaned_dir):
    """flops.train_flops (used for MFU) against torch's FlopCounterMode on one engine step: the dense
    layers, the last layer's keys/values at every token and the rest at the masked rows, the head."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoTokenizer

    from components.objectives import masked_lm as engine
    from components.shared import flops
    from components.shared.modeling import ModelSizes, build_mlm

    tok = AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR)
    # dropout > 0 keeps SDPA on its math path on a CPU, whose matmuls the counter sees (not the flash kernel's)
    model = build_mlm(ModelSizes.model_validate({**TINY, "num_layers": 3, "dropout": 0.1}), tok).train()
    ids = torch.randint(5, len(tok), (4, 64), generator=torch.Generator().manual_seed(0))
    inputs, labels = engine.Masker(tok, 0.15, 0)(ids)
    layout = engine.masked_layout(labels)
    with FlopCounterMode(display=False) as counter:
        engine.sparse_mlm_module(model)(inputs, *layout).backward()
    formula = flops.train_flops(ids.numel(), len(layout[2]), 64, model.config)
    # the counter also sees the last layer's query rows that pad each block to the batch's largest count
    assert formula <= counter.get_total_flops() <= 1.05 * formula
    dense = flops.train_flops(ids.numel(), len(layout[2]), 64, model.config, sparse_last_layer=False)
    assert counter.get_total_flops() < dense
