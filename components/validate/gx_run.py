"""Run great-expectations suites on in-memory frames, build the Data Docs, summarise the results.

The GX machinery behind `validate`: one ephemeral context, one pandas asset, validation
definition and checkpoint per suite, and a short JSON-able summary of each result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def run_suites(frames: dict[str, pd.DataFrame], suites: dict[str, list], site: Path) -> dict[str, Any]:
    """Validate each frame against its suite and build the Data Docs site under `site`.

    Returns suite name -> ExpectationSuiteValidationResult.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,  # no usage statistics from an offline pipeline step
        # tqdm bars ("Calculating Metrics") would otherwise fill the task log on stderr.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        # A local site instead of the ephemeral context's default one under a random temp dir.
        data_docs_sites={
            "lmforge": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(site),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=project)
    source = context.data_sources.add_pandas("lmforge")
    results = {}
    for name, expectations in suites.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        # One checkpoint per suite: a checkpoint passes the same batch_parameters (the in-memory
        # DataFrame) to all its validation definitions, and each suite has its own frame.
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        results[name] = next(iter(run.run_results.values()))
    return results


def summarise(result: Any) -> dict[str, Any]:
    """The JSON-able summary of one suite's validation result."""
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "description": r.expectation_config.description or "",
            "observed": observed(r),
        }
        for r in result.results
        if not r.success
    ]
    stats = result.statistics
    return {
        "success": bool(result.success),
        "evaluated": int(stats["evaluated_expectations"]),
        "successful": int(stats["successful_expectations"]),
        "failed": failed,
    }


def observed(r: Any) -> str:
    """Why one expectation failed, briefly: unexpected count and examples, or the value seen."""
    # exception_info is one {"raised_exception", "exception_message", ...} dict, or (when a metric
    # failed to compute, e.g. a missing column) a dict of those keyed by metric id.
    info = r.exception_info or {}
    for exc in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if exc.get("raised_exception"):
            return "error: " + str(exc.get("exception_message")).splitlines()[0][:200]
    res = r.result or {}
    missing = ((res.get("details") or {}).get("mismatched") or {}).get("missing")
    if missing:  # ExpectTableColumnsToMatchSet
        return f"missing columns {missing}"
    if "unexpected_count" in res:
        examples = ", ".join(_short(v) for v in (res.get("partial_unexpected_list") or [])[:3])
        return f"{res['unexpected_count']} unexpected" + (f" (e.g. {examples})" if examples else "")
    return f"observed {_short(res.get('observed_value'))}"


def label(failure: dict[str, Any]) -> str:
    """expectation(column), and what it checks when the suite says so: `[every class has train rows]`."""
    column, what = failure["column"], failure.get("description")
    return failure["expectation"] + (f"({column})" if column else "") + (f" [{what}]" if what else "")


def _short(value: Any, limit: int = 60) -> str:
    if hasattr(value, "item"):  # numpy scalars print as np.float64(...)
        value = value.item()
    if isinstance(value, float):
        value = round(value, 4)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
