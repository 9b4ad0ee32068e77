"""finetune: a classifier from the session's tiny pretrained encoder, on a learnable labeled set."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from components.finetune.finetune import FinetuneConfig, accuracy, finetune
from components.shared import artifacts
from components.shared.errors import UserError


@pytest.fixture(scope="module")
def classifier(classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(classifier_dir), AutoTokenizer.from_pretrained(classifier_dir)


def test_validation_accuracy_beats_the_majority_rate(classifier, cleaned_dir):
    model, tok = classifier
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    val = labeled[labeled.split == "validation"]
    majority = val["label"].value_counts(normalize=True).max()  # the best constant guess, even in hindsight
    acc, loss = accuracy(model, val, tok.pad_token_id)
    assert len(val) >= 20 and math.isfinite(loss)
    assert acc > majority, f"validation accuracy {acc:.3f} is not above the majority rate {majority:.3f}"


def test_history_records_every_evaluation_and_the_best_is_kept(classifier, classifier_dir, cleaned_dir):
    from components.finetune.loop import eval_interval
    from conftest import FINETUNE

    model, tok = classifier
    history = artifacts.read_json(classifier_dir / artifacts.HISTORY)
    evals = [h for h in history if "eval_accuracy" in h]
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train_rows = int((labeled.split == "train").sum())
    every = eval_interval(FinetuneConfig.from_params(FINETUNE, "finetune"), train_rows)
    assert every == -(-train_rows // FINETUNE["batch_size"]) == 21  # the default here: once an epoch (max_steps / 10 would be more often than every 50)
    assert [h["step"] for h in evals] == list(range(every, history[-1]["step"] + 1, every))
    assert all(math.isfinite(h["loss"]) and 0 <= h["eval_macro_f1"] <= 1 for h in evals)
    acc, _ = accuracy(model, labeled[labeled.split == "validation"], tok.pad_token_id)
    assert acc == pytest.approx(max(h["eval_accuracy"] for h in evals))
    assert (classifier_dir / artifacts.LOSS_CURVE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_saved_classifier_has_the_label_names_and_the_encoder(classifier, mlm_dir):
    import torch
    from transformers import AutoModelForMaskedLM

    model, tok = classifier
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    assert len(tok) == model.config.vocab_size
    # The encoder started from the pretrained weights: the embeddings moved only a little.
    pretrained = AutoModelForMaskedLM.from_pretrained(mlm_dir).bert.embeddings.word_embeddings.weight
    tuned = model.bert.embeddings.word_embeddings.weight
    assert pretrained.shape == tuned.shape
    assert torch.nn.functional.cosine_similarity(pretrained.flatten(), tuned.flatten(), dim=0) > 0.5


def test_predictions_follow_the_sentiment_words(classifier):
    import torch

    model, tok = classifier
    texts = ["A wonderful, moving and brilliant film.", "A dull, awful and tedious movie."]
    with torch.no_grad():
        logits = model(**tok(texts, return_tensors="pt", padding=True)).logits
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == ["positive", "negative"]


def test_labels_beyond_label_names_are_a_user_error(cleaned_dir, mlm_dir, tmp_path):
    config = FinetuneConfig.from_params({"label_names": ["only-one"], "max_steps": 1}, "finetune")
    with pytest.raises(UserError, match="finetune.label_names has 1 names") as info:
        finetune(cleaned_dir, mlm_dir, tmp_path / "out" / "classifier", config)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_pretrained_model_names_the_stage_to_run(cleaned_dir, tmp_path):
    with pytest.raises(UserError, match="run the pretrain stage first"):
        finetune(cleaned_dir, tmp_path / "no-mlm", tmp_path / "classifier", FinetuneConfig())
    assert not (tmp_path / "classifier").exists()


def test_control_is_the_same_shape_trained_from_random_weights(classifier, classifier_dir, mlm_dir):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from components.finetune.finetune import CONTROL_DIR

    model, _ = classifier
    control = AutoModelForSequenceClassification.from_pretrained(classifier_dir / CONTROL_DIR)
    assert control.config.to_dict() | {"_name_or_path": ""} == model.config.to_dict() | {"_name_or_path": ""}
    pretrained = AutoModelForMaskedLM.from_pretrained(mlm_dir).bert.embeddings.word_embeddings.weight
    emb = control.bert.embeddings.word_embeddings.weight
    # No pretraining reached it: its embeddings are unrelated to the pretrained ones.
    import torch

    assert abs(torch.nn.functional.cosine_similarity(pretrained.flatten(), emb.flatten(), dim=0)) < 0.2
    assert (classifier_dir / CONTROL_DIR / "tokenizer.json").is_file()
