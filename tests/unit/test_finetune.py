"""finetune: a classifier from the session's tiny pretrained encoder, on a learnable labeled set."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from components.finetune.finetune import CONTROL_DIR, SEARCH, FinetuneConfig, accuracy, finetune
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
    from tiny_data import FINETUNE

    from components.finetune.loop import eval_interval

    model, tok = classifier
    history = artifacts.read_json(classifier_dir / artifacts.HISTORY)
    evals = [h for h in history if "eval_accuracy" in h]
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train_rows = int((labeled.split == "train").sum())
    every = eval_interval(FinetuneConfig.from_params(FINETUNE, "finetune"), train_rows)
    assert every == -(-train_rows // FINETUNE["batch_size"]) == 21  # the default here: once an epoch (max_steps / 10 would be more often than every 50)
    assert [h["step"] for h in evals] == [every, 40]  # once an epoch, and at the end of the budget
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


def test_a_cleaned_folder_without_its_report_is_one_line_before_any_training(cleaned_dir, mlm_dir, tmp_path):
    cleaned = tmp_path / "cleaned"
    cleaned.mkdir()
    shutil.copy(cleaned_dir / artifacts.LABELED, cleaned)
    with pytest.raises(UserError, match=r"clean_report\.json is missing: run the clean_tokenize stage first") as info:
        finetune(cleaned, mlm_dir, tmp_path / "classifier", FinetuneConfig.from_params({"max_steps": 1}, "finetune"))
    assert "\n" not in str(info.value) and not (tmp_path / "classifier").exists()


def test_control_is_the_same_shape_trained_from_random_weights(classifier, classifier_dir, mlm_dir):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    model, _ = classifier
    control = AutoModelForSequenceClassification.from_pretrained(classifier_dir / CONTROL_DIR)
    assert control.config.to_dict() | {"_name_or_path": ""} == model.config.to_dict() | {"_name_or_path": ""}
    pretrained = AutoModelForMaskedLM.from_pretrained(mlm_dir).bert.embeddings.word_embeddings.weight
    emb = control.bert.embeddings.word_embeddings.weight
    # No pretraining reached it: its embeddings are unrelated to the pretrained ones.
    import torch

    assert abs(torch.nn.functional.cosine_similarity(pretrained.flatten(), emb.flatten(), dim=0)) < 0.2
    assert (classifier_dir / CONTROL_DIR / "tokenizer.json").is_file()


# --- budget, early stopping, the learning-rate search ---------------------------------------

QUICK = {"batch_size": 16, "log_every": 100, "threads": 1, "pooling": "cls"}  # cls: the tiny encoder learns within ~20 steps


def labeled_copy(cleaned_dir, root, edit):
    """A cleaned folder whose labeled set is the session's, changed by `edit(frame)`."""
    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    (root / "cleaned").mkdir(parents=True)
    edit(labeled).to_parquet(root / "cleaned" / artifacts.LABELED)
    shutil.copy(cleaned_dir / artifacts.CLEAN_REPORT, root / "cleaned")  # the labeled texts' length and cut
    return root / "cleaned"


def saved_scores(model_dir, cleaned):
    from transformers import AutoModelForSequenceClassification

    from components.tasks.classification import scores

    labeled = pd.read_parquet(cleaned / artifacts.LABELED)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return scores(model, labeled[labeled.split == "validation"], model.config.pad_token_id or 0, 2)


def test_early_stopping_ends_the_run_and_keeps_the_best_steps_weights(cleaned_dir, mlm_dir, tmp_path):
    # Validation labels flipped: the better the model learns the train split, the worse it scores.
    def flip(df):
        return df.assign(label=df.label.where(df.split != "validation", 1 - df.label))

    cleaned = labeled_copy(cleaned_dir, tmp_path, flip)
    config = FinetuneConfig.from_params({**QUICK, "max_steps": 300, "eval_every": 5, "patience": 2, "learning_rates": [5e-3], "control": False}, "finetune")
    metrics = finetune(cleaned, mlm_dir, tmp_path / "classifier", config)
    history = artifacts.read_json(tmp_path / "classifier" / artifacts.HISTORY)
    evals = [h for h in history if "eval_accuracy" in h]
    best = max(evals, key=lambda h: (h["eval_accuracy"], -h["eval_loss"]))
    assert metrics["finetune/stopped_early"] == 1 and metrics["finetune/steps"] == history[-1]["step"] < 300
    assert metrics["finetune/best_step"] == best["step"] and history[-1]["step"] == best["step"] + 2 * 5  # two validations, no improvement
    assert [h["step"] for h in evals] == list(range(5, history[-1]["step"] + 1, 5))
    # The saved weights are the best evaluation's, not the last step's.
    saved = saved_scores(tmp_path / "classifier", cleaned)
    assert saved["accuracy"] == best["eval_accuracy"] == metrics["finetune/val_accuracy"]
    assert saved["loss"] == pytest.approx(best["eval_loss"], rel=1e-5, abs=1e-6) and saved["loss"] != pytest.approx(evals[-1]["eval_loss"], rel=1e-4)


@pytest.fixture(scope="module")
def searched(cleaned_dir, mlm_dir, tmp_path_factory):
    """Three rates, the last two equal: [too low to learn, 5e-3, 5e-3], classifier and control.

    The test split's token ids point outside the vocabulary: scoring it would raise."""
    root = tmp_path_factory.mktemp("ft-search")

    def poison_test(df):
        return df.assign(input_ids=[ids if s != "test" else [10**6] * len(ids) for ids, s in zip(df.input_ids, df.split)])

    cleaned = labeled_copy(cleaned_dir, root, poison_test)
    config = FinetuneConfig.from_params({**QUICK, "max_steps": 40, "learning_rates": [1e-6, 5e-3, 5e-3], "patience": 0}, "finetune")
    return cleaned, root / "classifier", finetune(cleaned, mlm_dir, root / "classifier", config)


def test_the_search_keeps_the_rate_with_the_best_validation_score(searched):
    cleaned, out, metrics = searched
    search = artifacts.read_json(out / SEARCH)
    runs = search["classifier"]["runs"]
    assert [r["lr"] for r in runs] == [1e-6, 5e-3, 5e-3] and search["select_metric"] == "accuracy"
    scores = [metrics[f"finetune/val_accuracy_lr{i}"] for i in range(3)]
    assert scores == [r["best"]["accuracy"] for r in runs]
    assert scores[1] > scores[0] + 0.2  # 1e-6 barely moves the weights in 40 steps
    # Same initial weights, seed and batches: equal rates give equal runs; the tie goes to the first.
    assert runs[1]["evaluations"] == runs[2]["evaluations"]
    assert search["classifier"]["chosen"] == 1 and metrics["finetune/lr"] == 5e-3
    assert metrics["finetune/val_accuracy"] == max(scores)
    saved = saved_scores(out, cleaned)
    assert saved["accuracy"] == max(scores) and saved["loss"] == pytest.approx(runs[1]["best"]["loss"], rel=1e-5, abs=1e-6)
    assert all(r["steps"] == 40 and not r["stopped_early"] for r in runs)  # patience 0: the whole budget


def test_the_control_searches_the_same_rates_with_the_same_budget(searched):
    cleaned, out, metrics = searched
    search = artifacts.read_json(out / SEARCH)
    control = search["control"]
    assert [r["lr"] for r in control["runs"]] == [r["lr"] for r in search["classifier"]["runs"]]
    assert [r["steps"] for r in control["runs"]] == [40, 40, 40]
    ranks = [(r["best"]["accuracy"], -r["best"]["loss"]) for r in control["runs"]]
    assert control["chosen"] == ranks.index(max(ranks))
    assert metrics["finetune/control_lr"] == control["runs"][control["chosen"]]["lr"]
    assert [metrics[f"finetune/control_val_accuracy_lr{i}"] for i in range(3)] == [r["best"]["accuracy"] for r in control["runs"]]
    assert saved_scores(out / CONTROL_DIR, cleaned)["accuracy"] == metrics["finetune/control_val_accuracy"]


# --- class weights, pooling, layer decay ----------------------------------------------------


def test_balanced_class_weights_are_inverse_frequencies_from_the_train_labels():
    import numpy as np

    from components.tasks.classification import class_weights

    assert class_weights(np.array([0, 0, 0, 1]), 2, "none") is None
    assert class_weights(np.array([0, 0, 0, 1]), 2, "balanced").tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    # A class without train rows gets 0 (no row carries it); the others divide among the present classes.
    assert class_weights(np.array([2, 2, 0, 2]), 3, "balanced").tolist() == pytest.approx([2.0, 0.0, 4 / (2 * 3)])


def test_balanced_weights_change_the_loss_of_an_imbalanced_batch_as_computed_by_hand():
    import torch

    from components.tasks.classification import loss_sum as weighted_loss_sum

    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.5, 0.0]])  # the class-1 row is the one most wrong
    labels = torch.tensor([0, 0, 0, 1])
    w = torch.tensor([2 / 3, 2.0])
    ce = [math.log(1 + math.exp(-d)) for d in (2.0, 1.0, 0.0, -1.5)]  # two classes: CE = log(1 + e^-(margin of the true class))
    by_hand = (2 / 3 * (ce[0] + ce[1] + ce[2]) + 2 * ce[3]) / (3 * 2 / 3 + 2)
    weighted = float(weighted_loss_sum(logits, labels, w) / w[labels].sum())
    assert weighted == pytest.approx(by_hand, rel=1e-6)
    assert float(weighted_loss_sum(logits, labels, None)) / 4 == pytest.approx(sum(ce) / 4, rel=1e-6)
    assert weighted > sum(ce) / 4 + 0.05  # the rare class's large loss counts three times as much


def test_a_training_step_reports_the_weighted_mean_loss_of_its_batch(cleaned_dir, mlm_dir):
    import torch
    import torch.nn.functional as F

    from components.finetune.finetune import build_classifier
    from components.finetune.loop import prepare, train_step
    from components.shared.distributed import World
    from components.shared.training import optimizer_and_schedule
    from components.tasks.classification import collate

    labeled = pd.read_parquet(cleaned_dir / artifacts.LABELED)
    train = labeled[labeled.split == "train"]
    train = pd.concat([train[train.label == 0].iloc[:9], train[train.label == 1].iloc[:3]])  # 3:1
    config = FinetuneConfig.from_params({**QUICK, "class_weights": "balanced"}, "finetune")
    model = build_classifier(mlm_dir, config).eval()  # dropout off: the step sees the logits computed here
    s = prepare(model, 0, train, labeled[labeled.split == "validation"], config, "t", World())
    idx = torch.tensor([0, 1, 2, 9])  # three rows of class 0, one of class 1
    batch = collate(train.iloc[idx.numpy()], 0)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    w = torch.tensor([12 / (2 * 9), 12 / (2 * 3)])  # balanced over the 12 train rows
    expected = F.cross_entropy(logits, batch["labels"], weight=w)  # torch's weighted mean: sum(w[y] * ce) / sum(w[y])
    opt, sched = optimizer_and_schedule(model, 1e-3, 0.0, 0.0, 10)
    loss, tokens = train_step(s, idx, opt, sched)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert loss != pytest.approx(float(F.cross_entropy(logits, batch["labels"])), rel=1e-3)
    assert tokens == int(batch["attention_mask"].sum())


def test_cls_pooling_starts_as_tanh_of_cls_and_reloads_with_the_auto_class(mlm_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from components.finetune.finetune import build_classifier

    model = build_classifier(mlm_dir, FinetuneConfig(pooling="cls")).eval()
    dense = model.bert.pooler.dense
    assert torch.equal(dense.weight, torch.eye(dense.in_features)) and not dense.bias.any()
    hidden = torch.randn(3, 5, dense.in_features)
    assert torch.allclose(model.bert.pooler(hidden), torch.tanh(hidden[:, 0]))
    default = build_classifier(mlm_dir, FinetuneConfig()).bert.pooler.dense.weight
    assert not torch.allclose(default, torch.eye(dense.in_features))  # "pooler" keeps transformers' random init
    model.save_pretrained(tmp_path / "cls")
    again, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls", output_loading_info=True)
    assert type(again) is type(model) and not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([[2, 40, 41, 42, 3], [2, 50, 51, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert torch.equal(again.eval()(input_ids=ids, attention_mask=mask).logits, model(input_ids=ids, attention_mask=mask).logits)


def test_layer_decay_gives_each_layer_its_documented_rate():
    from transformers import BertConfig, BertForSequenceClassification

    from components.shared.training import optimizer_and_schedule

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2, intermediate_size=16, num_labels=2))
    opt, _ = optimizer_and_schedule(model, 1e-2, 0.01, 0.1, 10, layer_decay=0.5)
    rate = {id(p): (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        if ".embeddings." in name:
            depth = 3 + 1
        elif ".encoder.layer." in name:
            depth = 3 - int(name.split(".encoder.layer.")[1].split(".")[0])
        else:
            depth = 0  # pooler and classifier
        assert rate[id(p)] == (pytest.approx(1e-2 * 0.5**depth), 0.0 if p.ndim < 2 else 0.01), name
    assert opt.param_groups[0]["initial_lr"] == 1e-2  # the head's rate first: what progress lines show
    off, _ = optimizer_and_schedule(model, 1e-2, 0.01, 0.1, 10)
    assert [(g["initial_lr"], g["weight_decay"], len(g["params"])) for g in off.param_groups] == [
        (1e-2, 0.01, sum(p.ndim >= 2 for p in model.parameters())),
        (1e-2, 0.0, sum(p.ndim < 2 for p in model.parameters())),
    ]
