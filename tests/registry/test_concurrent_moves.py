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
