"""Contract: with `cluster.data_shards` > 1 the cluster pipeline fans clean_tokenize out over a KFP
ParallelFor of shard tasks and merges them; with 1, and under kfp.local, it stays one task."""

from __future__ import annotations

import yaml

from pipelines.compile import compile_pipeline
from pipelines.config import load_config


def _compile(tmp_path, target: str, shards: int):
    config = load_config("gpu", [f"cluster.data_shards={shards}"])
    path = compile_pipeline(config, "gpu", tmp_path / f"{target}-{shards}.yaml", target=target)
    docs = list(yaml.safe_load_all(path.read_text()))
    return config, docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}


def test_sharded_clean_tokenize_is_a_parallel_for_then_a_merge(tmp_path):
    config, ir, platform = _compile(tmp_path, "cluster", 4)
    tasks = ir["root"]["dag"]["tasks"]
    loops = [name for name, t in tasks.items() if "parameterIterator" in t]
    assert len(loops) == 1
    loop = tasks[loops[0]]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2, 3]"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert [t["componentRef"]["name"] for t in inner.values()] == ["comp-clean-tokenize-shard-op"]
    assert "clean-tokenize-op" not in tasks
    merge = tasks["clean-tokenize-merge-op"]
    assert set(merge["dependentTasks"]) >= {loops[0], "clean-tokenize-prepare-op"}
    assert merge["inputs"]["artifacts"]["parts"]["taskOutputArtifact"] == {"outputArtifactKey": "pipelinechannel--clean-tokenize-shard-op-part", "producerTask": loops[0]}
    # later stages read the merged output, and the placement and secrets reach every part
    assert tasks["validate-op"]["inputs"]["artifacts"]["cleaned"]["taskOutputArtifact"]["producerTask"] == "clean-tokenize-merge-op"
    for name in ("clean-tokenize-prepare-op", "clean-tokenize-shard-op", "clean-tokenize-merge-op"):
        assert platform[f"exec-{name}"]["secretAsEnv"]


def test_one_shard_and_the_local_target_keep_one_task(tmp_path):
    for target, shards in (("cluster", 1), ("local", 4)):
        _, ir, _ = _compile(tmp_path, target, shards)
        tasks = ir["root"]["dag"]["tasks"]
        assert "clean-tokenize-op" in tasks and not any("parameterIterator" in t for t in tasks.values())


def test_the_fan_out_components_are_shims_over_sharded_py():
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[2] / "components" / "clean_tokenize" / "sharded_component.py").read_text())
    ops = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert set(ops) == {"clean_tokenize_prepare_op", "clean_tokenize_shard_op", "clean_tokenize_merge_op"}
    for name, fn in ops.items():
        assert fn.end_lineno - fn.body[0].lineno + 1 <= 20, name
        assert not [n for n in ast.walk(fn) if isinstance(n, (ast.If, ast.Try, ast.For, ast.While, ast.IfExp))], name
        assert "install_kfp_package=False" in ast.unparse(fn.decorator_list[0])
