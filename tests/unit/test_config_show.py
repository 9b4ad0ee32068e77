"""`lmforge config show`: the resolved configuration, each key with its description."""

from __future__ import annotations

import yaml

from pipelines.cli import main
from pipelines.config import load_config


def test_config_show_prints_every_key_with_its_description_and_stays_yaml(capsys):
    assert main(["config", "show", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    config = load_config("tiny")
    shown = yaml.safe_load(out)
    assert {k: shown[k] for k in config.resolved()} == config.resolved()  # the comments change no value
    stage_lines = [line for line in out.splitlines() if line.startswith("  ") and not line.strip().startswith(("-", "#")) and ":" in line]
    described = [line for line in stage_lines if "  # " in line]
    cluster_start = out.splitlines().index("cluster:")
    undocumented = [line for line in out.splitlines()[:cluster_start] if line.startswith("  ") and "  # " not in line]
    assert not undocumented, undocumented
    assert "  max_labeled_removed: 0.05  # stop the run when one cleaning rule removes more than this share of the labeled rows" in out
    assert "    hidden_size: 32  # " in out  # nested sections too (pretrain.model)
    assert len(described) > 80 and out.rstrip().splitlines()[-1].startswith("# config hash: ")
