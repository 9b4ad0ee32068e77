"""bench.quality's outputs: the markdown table, the JSON of every cell, and the accuracy-vs-tokens plot."""

from __future__ import annotations

import json
from pathlib import Path

DASH = "-"  # a number evaluate did not report (e.g. TF-IDF + LR before evaluate writes it)
COLUMNS = [
    "dataset",
    "row",
    "steps",
    "tokens",
    "val acc",
    "control val acc",
    "acc",
    "F1",
    "control acc",
    "control F1",
    "TF-IDF acc",
    "TF-IDF F1",
    "majority",
    "pretrained - control (acc)",
    "pretrained - TF-IDF (acc)",
    "cell s",
]


def num(value, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def tokens(n: int) -> str:
    """12800 -> '12.8k', 2457600 -> '2.46M'; 0 -> '0'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def interval(comparison: dict | None, metric: str = "accuracy") -> str:
    """'+0.0112 [-0.0093, +0.0317]' from a gate comparison {metric: {diff, low, high}}; '-' when absent."""
    if not comparison or metric not in comparison:
        return DASH
    c = comparison[metric]
    return f"{c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"


def table_row(cell: dict) -> list[str]:
    r = cell["result"]
    return [
        cell["dataset"],
        cell["row"],
        str(cell["budget"]),
        tokens(r["pretrain_tokens"]),
        num(r.get("val_accuracy")),  # cells from before the columns existed: '-'
        num(r.get("control_val_accuracy")),
        num(r["accuracy"]),
        num(r["macro_f1"]),
        num(r["control_accuracy"]),
        num(r["control_macro_f1"]),
        num(r["tfidf_accuracy"]),
        num(r["tfidf_macro_f1"]),
        num(r["majority_accuracy"]),
        interval(r["vs_control"]),
        interval(r["vs_tfidf"]),
        cell_seconds(r),
    ]


def cell_seconds(r: dict) -> str:
    """The stages' compute time, cached ones included ('12 (cached)' when none ran now); this
    invocation's wall time where the cache did not keep it (cells from before it did)."""
    seconds = r.get("compute_s")
    if seconds is None:
        return f"{r['wall_s']:.0f}"
    return f"{seconds:.0f}" + (" (cached)" if r["stages"] and all(s["cached"] for s in r["stages"].values()) else "")


def table(cells: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(c)) + " |" for c in cells]
    return "\n".join(lines)


def progress_line(cell) -> str:
    """One line per finished cell: scores, what ran and what came from the cache."""
    c = cell if isinstance(cell, dict) else vars(cell)
    r = c["result"]
    ran = ", ".join(f"{s} " + ("cached" if v["cached"] else f"{v['seconds']:.0f}s") for s, v in r["stages"].items())
    return (
        f"{c['dataset']} | {c['row']} | {c['budget']} steps ({tokens(r['pretrain_tokens'])} tokens): acc {num(r['accuracy'])} "
        f"control {num(r['control_accuracy'])} TF-IDF {num(r['tfidf_accuracy'])} majority {num(r['majority_accuracy'])} "
        f"in {r['wall_s']:.0f}s ({ran})"
    )


def markdown(result: dict, png_name: str) -> str:
    env = result["environment"]
    commit = env["commit"]
    sha = commit.get("git_commit", "") if isinstance(commit, dict) else str(commit)
    rows = "; ".join(f"**{name}** `{' '.join(sets) or '(preset as is)'}`" for name, sets in result["rows"].items())
    return f"""# Where pretraining pays (`python -m bench.quality`)

Preset `{env["preset"]}` with each row's overrides; budgets are pretrain.max_steps on the demo corpus (0 = the
encoder pretraining starts from, untrained). "acc"/"F1": test accuracy and macro-F1 of the classifier fine-tuned
from the pretrained encoder; "control": the same recipe from a random-init encoder (finetune.control); intervals:
95% paired bootstrap of the test split, from evaluate's gate.json. "val acc": the validation accuracy of the
chosen fine-tuning run (classifier, control), **the column a recipe is chosen on**; the test columns are scored
once, for the record. "cell s": what its stages took when they ran, cached ones included. `-`: not reported.

{table(result["cells"])}

Rows: {rows}.

commit {sha[:12]}{" (dirty)" if isinstance(commit, dict) and commit.get("git_dirty") else ""}, torch {env["torch"]}, {env["threads"]} thread(s),
{env["date"]}, {env["wall_s"]:.0f} s in all.

![accuracy against pretraining tokens]({png_name})
"""


def write(result: dict, prefix: Path) -> None:
    """<prefix>.json (every cell and the environment), .md (the table) and .png (the plot)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    plot(result["cells"], Path(f"{prefix}.png"))
    Path(f"{prefix}.md").write_text(markdown(result, f"{prefix.name}.png"))


def error_bar(comparison: dict | None) -> tuple[float, float]:
    """(below, above) the point: the interval of pretrained - control around its difference."""
    if not comparison:
        return 0.0, 0.0
    c = comparison["accuracy"]
    return c["diff"] - c["low"], c["high"] - c["diff"]


def plot(cells: list[dict], path: Path) -> None:
    """Per dataset a panel: test accuracy against pretraining tokens (symlog x, so 0 sits at the left),
    pretrained and control per row, TF-IDF + LR and majority as horizontal lines; the error bars are the
    interval of pretrained - control drawn around the pretrained point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], datasets):
        mine = [c for c in cells if c["dataset"] == name]
        positive = [c["result"]["pretrain_tokens"] for c in mine if c["result"]["pretrain_tokens"] > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1)
        for i, row in enumerate(dict.fromkeys(c["row"] for c in mine)):
            series = sorted((c for c in mine if c["row"] == row), key=lambda c: c["result"]["pretrain_tokens"])
            x = [c["result"]["pretrain_tokens"] for c in series]
            acc = [c["result"]["accuracy"] for c in series]
            err = list(zip(*(error_bar(c["result"]["vs_control"]) for c in series)))
            colour = f"C{i}"
            ax.errorbar(x, acc, yerr=err, marker="o", color=colour, capsize=3, label=f"pretrained ({row})")
            control = [(xi, c["result"]["control_accuracy"]) for xi, c in zip(x, series) if c["result"]["control_accuracy"] is not None]
            if control:
                ax.plot(*zip(*control), linestyle="--", marker="x", color=colour, alpha=0.7, label=f"control ({row})")
        for key, label, style in (("tfidf_accuracy", "TF-IDF + LR", "-."), ("majority_accuracy", "majority", ":")):
            values = [c["result"][key] for c in mine if c["result"][key] is not None]
            if values:
                ax.axhline(values[0], color="grey", linestyle=style, label=label)
        ax.set(title=name, xlabel="pretraining tokens (0 = none)", ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
