"""The model card that goes with every registered version (its MLflow description and an artifact).

Markdown, generated from what the run produced: nothing in it is typed by hand, so it cannot drift
from the version it describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from components.shared import inputs
from components.shared.lineage import (
    CONFIG_HASH_TAG,
    DATA_FILES_MD5_TAG,
    DATA_MD5_TAG,
    DATA_REPO_TAG,
    DATA_REV_TAG,
    GATE_SUMMARY_TAG,
    PRESET_TAG,
    SEEDS_TAG,
    TOKENIZER_HASH_TAG,
    VALIDATION_SUITES_TAG,
    VALIDATION_TAG,
)
from components.tasks import classification


def model_card(model_name: str, version: str, report: dict, gate: dict, tags: dict, clean: dict, classifier_dir: Path, task: ModuleType = classification) -> str:
    """The card of one version: the task (components/tasks/) gives the intended use, the limits,
    the head and the metrics table's columns; the objective the architecture and pretraining."""
    from transformers import AutoConfig

    from components import objectives

    shape = AutoConfig.from_pretrained(classifier_dir)  # maps GPT-2's n_layer/n_embd/n_head to the common names
    card = objectives.of_pretrained(classifier_dir).CARD
    removed = {t: sum(rules.values()) for t, rules in clean["removed"].items()}
    tokens = clean["tokens"]
    lines = [
        f"# {model_name} version {version}",
        "",
        f"**Gate: {'passed' if gate['passed'] else 'failed'}.** {gate['summary']}",
        "",
        "## Intended use",
        "",
        task.CARD["intended_use"],
        "",
        "## Data",
        "",
        f"- DVC data revision `{tags[DATA_REV_TAG]}` of `{tags[DATA_REPO_TAG]}`; data.dvc md5 `{tags[DATA_MD5_TAG]}`",
        "- files: " + ", ".join(f"`{f}` md5 `{m}`" for f, m in json.loads(tags[DATA_FILES_MD5_TAG]).items()),
        f"- after cleaning: {clean['rows']['corpus']} corpus documents ({tokens['corpus_tokens']:,} tokens), {clean['rows']['labeled']} labeled sentences; "
        f"removed {removed.get('corpus', 0)} documents and {removed.get('labeled', 0)} sentences",
        f"- great-expectations validation: {tags[VALIDATION_TAG]} ({tags[VALIDATION_SUITES_TAG]} suites)",
        "",
        "## Training",
        "",
        f"- {card['architecture']}: {shape.num_hidden_layers} layers, hidden {shape.hidden_size}, {shape.num_attention_heads} heads, "
        f"vocabulary {shape.vocab_size} (WordPiece trained on the corpus, hash `{tags[TOKENIZER_HASH_TAG][:12]}`)",
        f"- {card['pretraining']} on packed blocks, then fine-tuning of {task.CARD['head']} on the train split",
        _inputs_line(tokens),
        f"- preset `{tags[PRESET_TAG]}`, config hash `{tags[CONFIG_HASH_TAG][:12]}` (the whole config: `config.yaml` on the run); seeds {tags[SEEDS_TAG]}",
        "",
        "## Metrics (test split)",
        "",
        f"| metric | this model | {' | '.join(short for _, _, short in task.BASELINES.values())} | random-init control | champion |",
        "|---|---|" + "---|" * (len(task.BASELINES) + 2),
    ]
    keys = [key for key, _, _ in task.BASELINES.values()] + ["vs_control", "vs_champion"]
    for m in task.GATE_METRICS:
        others = [gate[key][m]["other"] if gate.get(key) else None for key in keys]
        lines.append(f"| {m} | {report[m]:.4f} | " + " | ".join(_fmt(v) for v in others) + " |")
    lines += ["", f"Held-out {card['perplexity']} perplexity {report['perplexity']:.1f}; {report['n_test']} test sentences."]
    if report.get("baseline_tfidf_chosen"):  # written by evaluate since the TF-IDF baseline exists
        lines.append(f"TF-IDF + LR trained on the train split, its settings chosen on validation: {report['baseline_tfidf_chosen']}.")
    if report.get("baseline_ridge_chosen"):
        lines.append(
            f"TF-IDF + ridge regression trained on the train split, its settings chosen on validation: {report['baseline_ridge_chosen']}; "
            f"the train-mean baseline predicts {report['baseline_mean_value']:.3f} everywhere. Lower RMSE is better."
        )
    lines.append("")
    lines += ["## Gate", "", gate["summary"], ""] + [f"- {r}" for r in gate["reasons"]] + ["", "## Limits", ""] + [f"- {x}" for x in task.CARD["limits"]]
    lines += ["", "## Lineage", "", "| tag | value |", "|---|---|"] + [f"| {k} | `{v}` |" for k, v in sorted(tags.items()) if k != GATE_SUMMARY_TAG]
    return "\n".join(lines) + "\n"


def _inputs_line(tokens: dict) -> str:
    """What the classifier reads, as training cut it (config.json's lmforge_inputs says the same)."""
    spec = inputs.inputs_of(tokens)
    how = "its first tokens (head)" if spec["truncation"] == "head" else "a quarter head and three quarters tail (head_tail)"
    return (
        f"- inputs: [CLS] text [SEP], at most {spec['max_seq_len']} tokens ({tokens['labeled_truncated']} labeled texts cut); a longer text keeps {how}. "
        "Served through pyfunc (`mlflow models serve`) a longer text is cut at the head; "
        "for head_tail, cut texts as `components/shared/inputs.py` does to score as above"
    )


def _fmt(v) -> str:
    return f"{v:.4f}" if v is not None else "-"
