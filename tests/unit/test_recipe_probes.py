"""bench.recipe_probes: the distillation teacher and loss it measures, self-training's pseudo-labels, the fine-tuning variants, the control pairing, and its one-line refusal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.distil_probe import soft_target_task, teacher_probabilities
from bench.recipe_probes import CLEANED, PRETRAINED, main
from bench.selftrain_probe import corpus_sentences, most_confident


def test_the_teacher_scores_each_train_row_with_a_model_that_never_saw_it():
    from components.tasks import baselines

    # Labels that no word predicts: a model fitted on a row can memorise it, one that never saw it can only guess.
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{k}" for k in rng.integers(0, 300, size=8)) for _ in range(300)]
    frame = pd.DataFrame({"text": texts, "label": rng.integers(0, 2, size=300)})
    train, val, test = frame[:200].reset_index(drop=True), frame[200:250], frame[250:]
    probs, chosen = teacher_probabilities(train, val, test)
    assert probs.shape == (len(train), 2) and np.allclose(probs.sum(1), 1.0)
    assert chosen["cross_fitted_train_accuracy"] == pytest.approx(float((probs.argmax(1) == train.label).mean()))
    vec, x = baselines.fit_features(tuple(chosen["ngram_range"]), train.text)
    in_sample = float((baselines.classifier(16.0, None, 0).fit(x, train.label).predict(x) == train.label).mean())
    assert in_sample > 0.9 and chosen["cross_fitted_train_accuracy"] < 0.65


def test_the_soft_target_loss_mixes_cross_entropy_with_the_teacher_or_the_uniform_target():
    import torch
    import torch.nn.functional as F

    rows = pd.DataFrame({"input_ids": [[1, 5, 2], [1, 6, 7, 2], [1, 8, 2]], "label": [0, 1, 1], "pos": [2, 0, 1]})
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]]), torch.tensor([0, 1, 1])
    logp = F.log_softmax(logits, -1)
    hard = F.cross_entropy(logits, labels, reduction="sum")
    for kind, weight in (("kd", 0.0), ("kd", 0.5), ("kd", 1.0), ("ls", 0.1)):
        task = soft_target_task(kind, weight, teacher)
        task.collate(rows, 0)  # the batch's rows: positions 2, 0, 1 of train
        soft = -(teacher[[2, 0, 1]] * logp).sum() if kind == "kd" else -logp.mean(-1).sum()
        assert float(task.loss_sum(logits, labels, None)) == pytest.approx(float((1 - weight) * hard + weight * soft), rel=1e-6)
    # the teacher's rows follow the batch's positions, not the batch order
    task = soft_target_task("kd", 1.0, teacher)
    task.collate(rows.assign(pos=[0, 1, 2]), 0)
    assert float(task.loss_sum(logits, labels, None)) != pytest.approx(float(-(teacher[[2, 0, 1]] * logp).sum()))


def test_a_folder_that_is_not_a_finished_run_is_one_line(tmp_path, capsys):
    assert main(["rates", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clean-tokenize-op/cleaned is missing" in err[0] and "make demo" in err[0]
    # self-training also needs the run's fine-tuned classifier (its teacher)
    (tmp_path / CLEANED).mkdir(parents=True)
    (tmp_path / PRETRAINED).mkdir(parents=True)
    assert main(["selftrain", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finetune-op/classifier is missing" in err[0]


@pytest.mark.parametrize("flags, says", [(["--no-control", "--control-only"], "not allowed with"), (["--no-control", "--against", "cls"], "drop --no-control")])
def test_rates_refuses_flags_that_leave_nothing_to_train_or_pair(tmp_path, capsys, flags, says):
    with pytest.raises(SystemExit) as exit_:
        main(["rates", str(tmp_path), *flags])
    assert exit_.value.code == 2 and says in capsys.readouterr().err.strip().splitlines()[-1]


def test_self_training_picks_the_most_confident_rows_of_each_predicted_class():
    probs = np.array([[0.99, 0.01], [0.6, 0.4], [0.2, 0.8], [0.97, 0.03], [0.05, 0.95], [0.45, 0.55], [0.995, 0.005]])
    assert most_confident(probs, 4).tolist() == [0, 2, 4, 6]  # two of class 0 (0.995, 0.99), two of class 1 (0.95, 0.8)
    assert most_confident(probs, 2).tolist() == [4, 6]  # a class of 5 predicted rows does not crowd out the other


def test_corpus_sentences_are_split_bounded_distinct_and_never_a_labeled_text(tmp_path):
    from components.shared import artifacts

    (tmp_path / CLEANED).mkdir(parents=True)
    docs = [
        "A fine film with a great cast. It was dull at times, sadly!\n\nWhy? I liked the ending of this one a lot.",
        "It was dull at times, sadly! The acting was wooden and flat throughout.",
    ]
    pd.DataFrame({"doc_id": ["a", "b"], "title": ["", ""], "text": docs}).to_parquet(tmp_path / CLEANED / artifacts.CORPUS)
    got = corpus_sentences(tmp_path, 100, exclude=["THE ACTING WAS WOODEN AND FLAT THROUGHOUT."])
    assert got == ["A fine film with a great cast.", "It was dull at times, sadly!", "I liked the ending of this one a lot."]
    assert len(corpus_sentences(tmp_path, 2, exclude=[])) == 2


@pytest.mark.parametrize("variant", ["freeze-embeddings", "lp-ft"])
def test_a_fine_tuning_variant_changes_only_what_it_names_and_leaves_every_weight_trainable(variant):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from bench.recipe_probes import start_variant
    from components.finetune import loop
    from pipelines.config import load_config

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=2))
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"input_ids": [rng.integers(1, 30, 6) for _ in range(16)], "label": [i % 2 for i in range(16)]})
    config = load_config("tiny", ["finetune.max_steps=4", "finetune.batch_size=8", "finetune.threads=1"]).finetune
    s = loop.prepare(model, 0, rows, rows, config, "probe", loop.World())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start_variant(model, s, 1e-2, variant, "probe")
    after = model.state_dict()
    if variant == "freeze-embeddings":
        assert not model.get_input_embeddings().weight.requires_grad
        assert all(p.requires_grad for n, p in model.named_parameters() if n != "bert.embeddings.word_embeddings.weight")
        assert all(torch.equal(before[k], after[k]) for k in before)  # it only freezes; the run trains
    else:
        assert all(p.requires_grad for p in model.parameters())
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and changed <= {k for k in before if k.startswith(("classifier.", "bert.pooler."))}
    start_variant(model, s, 1e-2, None, "probe")
    assert all(p.requires_grad for p in model.parameters())


def test_against_pairs_a_saved_classifier_with_the_control_run_validation_chose(tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from bench.recipe_probes import against, probabilities

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=2))
    model.save_pretrained(tmp_path / "classifier")
    rng = np.random.default_rng(0)
    test = pd.DataFrame({"input_ids": [rng.integers(1, 30, 6) for _ in range(200)], "label": rng.integers(0, 2, 200)})
    pred = probabilities(model.eval(), test, 0).argmax(1)
    mine, wrong = pred.tolist(), (1 - test["label"]).tolist()  # the classifier's own answers, and every answer wrong
    # Validation chose the second run (0.6 > 0.5): the interval is against every-answer-wrong, not against itself.
    control = {"lr 0.0001": [0.5, 0.0], "lr 0.0003": [0.6, 0.0], "test predictions": {"lr 0.0001": mine, "lr 0.0003": wrong}}
    r = against(tmp_path / "classifier", control, test, 0)
    accuracy = float((pred == test["label"]).mean())
    assert r["control run"] == "lr 0.0003" and r["other"] == 0.0 and r["new"] == pytest.approx(accuracy)
    assert r["diff"] == pytest.approx(accuracy) and r["low"] <= r["diff"] <= r["high"] and r["high"] - r["low"] > 0
    control["lr 0.0001"][0] = 0.7  # now its own answers: no difference, and no spread
    assert against(tmp_path / "classifier", control, test, 0) | {"classifier": None} == {
        "classifier": None,
        "control run": "lr 0.0001",
        "new": pytest.approx(accuracy),
        "other": pytest.approx(accuracy),
        "diff": 0.0,
        "low": 0.0,
        "high": 0.0,
    }
