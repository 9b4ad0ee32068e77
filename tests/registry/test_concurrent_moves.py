"""8 alias moves at once, in 8 processes, against a real `mlflow server` on 127.0.0.1.

Before the moves were serialised, 4 concurrent promote/rollback commands recorded one sequence
number three times, left the alias on v1 while the history ended on v4, and made the next
rollback refuse ("moved outside LMForge"). Here every move is checked to have landed in order.
"""

from __future__ import annotations

import pytest
from concurrency import concurrent_moves, history_figures

from components.shared import registry

OPS = ["promote:2", "rollback", "promote:3", "rollback", "promote:4", "rollback", "promote:2", "rollback"]


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_eight_concurrent_promotes_and_rollbacks_leave_a_strict_history(make_version, backend, model_name, tmp_path):
    versions = [make_version() for _ in range(4)]
    registry.promote(model_name, versions[0])
    ops = [("promote", versions[int(op[-1]) - 1]) if op.startswith("promote") else ("rollback", None) for op in OPS]
    results = concurrent_moves(backend, model_name, ops, tmp_path)

    refused = [r["error"] for r in results if not r["ok"]]
    assert all("has no previous holder to roll back to" in e for e in refused), refused  # the one refusal an interleaving may earn
    moved = [r for r in results if r["ok"] and r["moved"]]
    # Promotes to v3 and v4 always move, and at least one of the two to v2; every rollback may come
    # first and be refused (seen on a loaded machine), so 3 is the least any interleaving gives.
    assert len(moved) >= 3, results
    figures = history_figures(model_name, expected_moves=1 + len(moved))
    assert figures == {"records": 1 + len(moved), "duplicated": 0, "gaps": 0, "pending": 0, "problems": [], "alias_is_last_record": True, "broken_links": 0, "lost": 0}
    assert sorted(r["seq"] for r in moved) == list(range(2, 2 + len(moved))), "each move holds its own number"

    # rollback works after any interleaving: promote away from the holder, roll back, land on it again
    holder = registry.champion(model_name)
    other = next(v for v in versions if v != holder)
    registry.promote(model_name, other)
    assert registry.rollback(model_name)["to_version"] == holder and registry.champion(model_name) == holder
    assert history_figures(model_name)["problems"] == []


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_concurrent_first_runs_on_a_fresh_server_share_one_experiment(backend, model_name):
    """8 pipeline runs started at once against a fresh server all found no `lmforge` experiment
    and all created it; the server's unique name refused 7 of them, and 6 runs died in CI with
    RESOURCE_ALREADY_EXISTS. Every racer must come back with the one experiment's id."""
    import threading

    import mlflow

    from components.shared import tracking

    name = f"{model_name}-experiment"
    looked = threading.Barrier(8)
    ids, errors = [], []

    class Racer(mlflow.MlflowClient):
        """A real client whose first look-up waits until all 8 have looked: every racer then
        has seen no experiment, the interleaving that CI met, made certain."""

        first = True

        def get_experiment_by_name(self, name):
            found = super().get_experiment_by_name(name)
            if self.first:
                self.first = False
                looked.wait(timeout=60)
            return found

    def first_run():
        try:
            ids.append(tracking.experiment_id(Racer(backend), name, "a test's runs"))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows what a racer met
            errors.append(repr(exc))

    threads = [threading.Thread(target=first_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(ids) == 8 and len(set(ids)) == 1, (errors, ids)
    assert mlflow.MlflowClient(backend).get_experiment_by_name(name).experiment_id == ids[0]
