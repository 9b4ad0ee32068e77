"""The registry commands of the CLI: promote, rollback, models list, models history.

Each prints the move it made, or a plain aligned table; every alias move goes through
components.shared.registry, which records it.
"""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub) -> None:
    """Add `promote`, `rollback` and `models list|history` to the CLI's subparsers."""
    promote = sub.add_parser("promote", help="move @champion to a version whose gate passed (recorded)")
    promote.add_argument("model", help="registered model name, e.g. lmforge-sentiment")
    promote.add_argument("version", help="model version number (see lmforge models list)")
    promote.add_argument("--force", action="store_true", help="promote although the gate did not pass (needs --reason)")
    promote.add_argument("--reason", default="", help="why; recorded in the model's history (required with --force)")

    rollback = sub.add_parser("rollback", help="return an alias to its previous holder (recorded)")
    rollback.add_argument("model", help="registered model name")
    rollback.add_argument("--alias", default="champion", help="alias to roll back (default: champion)")
    rollback.add_argument("--reason", default="", help="why; recorded in the model's history")

    models = sub.add_parser("models", help="registered models: versions and alias history")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="versions, aliases, gate and key metrics as a table")
    listing.add_argument("model", nargs="?", default=None, help="one registered model (default: all)")
    hist = models_sub.add_parser("history", help="every alias move: who, when, from, to, why, gate")
    hist.add_argument("model", help="registered model name")


def cmd_promote(args: argparse.Namespace) -> int:
    from components.shared import registry

    print(describe(registry.promote(args.model, args.version, force=args.force, reason=args.reason)))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from components.shared import registry

    print(describe(registry.rollback(args.model, args.alias, reason=args.reason)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from components.shared import registry

    if args.models_command == "list":
        rows = registry.list_versions(args.model)
        print(versions_table(rows) if rows else "no registered model versions yet (lmforge run registers one)")
    else:
        records, problems = registry.audit(args.model)
        print(history_table(records) if records else f"{args.model}: no alias moves recorded yet")
        if problems:  # loudly, on stderr and in the exit status: a damaged history is not a quiet one
            print(f"error: the alias history of {args.model} is damaged or was tampered with:", file=sys.stderr)
            for line in problems:
                print(f"  - {line}", file=sys.stderr)
            return 3
    return 0


def describe(record: dict) -> str:
    """One line for a move: what moved where, on what gate, recorded as which entry."""
    target = f"{record['model']}@{record['alias']}"
    if not record["moved"]:
        return f"{target} already points at version {record['to_version']}: nothing moved, nothing recorded"
    frm = f"version {record['from_version']}" if record["from_version"] else "(unset)"
    forced = " FORCED" if record["forced"] else ""
    return f"{target}: {frm} -> version {record['to_version']}{forced} (gate {record['gate']}; {record['action']} #{record['seq']} by {record['actor']}: {record['reason']})"


def versions_table(rows: list[dict]) -> str:
    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    # A regression model's scores get columns of their own, shown only when such a version is listed.
    scored = any(r.get("pearson") is not None for r in rows)
    extra = ["Pearson", "RMSE"] if scored else []
    header = ["model", "version", "aliases", "created (UTC)", "gate", "accuracy", "macro-F1", "majority", "TF-IDF", *extra, "perplexity", "data rev", "run"]
    body = [
        [r["model"], r["version"], ",".join(f"@{a}" for a in r["aliases"]) or "-", r["created"], r["gate"], num(r["accuracy"], ".4f"),
         num(r["macro_f1"], ".4f"), num(r["baseline_majority_accuracy"], ".4f"),
         num(r.get("baseline_tfidf_accuracy"), ".4f"), *([num(r.get("pearson"), ".4f"), num(r.get("rmse"), ".4f")] if scored else []),
         num(r["perplexity"], ".1f"), r["data_rev"] or "-", r["run_name"] or "-"]
        for r in rows
    ]  # fmt: skip
    return table(header, body, right={"version", "accuracy", "macro-F1", "majority", "TF-IDF", "Pearson", "RMSE", "perplexity"})


def history_table(records: list[dict]) -> str:
    header = ["#", "time (UTC)", "alias", "action", "from", "to", "gate", "forced", "actor", "reason"]
    body = [
        [str(r["seq"]) + {"done": "", "failed": "!"}.get(r["state"], "?"), r["time"], r["alias"], r["action"], r["from_version"] or "-", r["to_version"],
         r["gate"], "FORCED" if r["forced"] else "no", r["actor"], r["reason"] or "-"]
        for r in records
    ]  # fmt: skip
    text = table(header, body, right={"#", "from", "to"})
    if any(r["state"] == "failed" for r in records):
        text += "\n! failed: the move was attempted and the alias did not move (kept so the numbers have no gaps)"
    if any(r["state"] == "unconfirmed" for r in records):
        text += "\n? unconfirmed: in flight, or the tracking server failed while this move was made (the next move settles it from the alias)"
    return text


def table(header: list[str], rows: list[list[str]], right: set[str] = frozenset()) -> str:
    """Plain text columns separated by two spaces; numbers right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        out = [str(c).rjust(w) if h in right else str(c).ljust(w) for c, w, h in zip(cells, widths, header)]
        return "  ".join(out).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


COMMANDS = {"promote": cmd_promote, "rollback": cmd_rollback, "models": cmd_models}
