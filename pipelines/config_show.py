"""`lmforge config show`: the resolved configuration as YAML, each key followed by its description.

The output is still valid YAML (descriptions are comments), so it can be saved as a preset and
edited; the descriptions come from the typed stage configs, the one place they are written.
"""

from __future__ import annotations

import yaml
from pydantic import BaseModel


def render(config) -> str:
    """The resolved config (what is hashed and run), commented, then the cluster section."""
    from pipelines.config import STAGES, PipelineConfig

    resolved = config.resolved()
    lines = [f"description: {_flow(resolved['description'])}  # {PipelineConfig.model_fields['description'].description}"]
    for stage in STAGES:
        lines.append(f"{stage}:")
        lines += _lines(resolved[stage], type(config.stage(stage)), "  ")
    lines.append(yaml.safe_dump({"cluster": config.cluster.model_dump(mode="json", exclude_defaults=True)}, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def _lines(values: dict, model: type[BaseModel], indent: str) -> list[str]:
    out = []
    for key, value in values.items():
        field = model.model_fields.get(key)
        doc = f"  # {field.description}" if field is not None and field.description else ""
        sub = _submodel(field)
        if isinstance(value, dict) and sub is not None and value:
            out.append(f"{indent}{key}:{doc}")
            out += _lines(value, sub, indent + "  ")
        else:
            out.append(f"{indent}{key}: {_flow(value)}{doc}")
    return out


def _submodel(field) -> type[BaseModel] | None:
    annotation = getattr(field, "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _flow(value) -> str:
    """One YAML value on one line: 1.0e-3, [a, b], {k: v}, 'quoted: strings'."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()
