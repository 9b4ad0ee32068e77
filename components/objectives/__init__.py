"""Pretraining objectives, one module each, looked up by the name in `pretrain.objective`.

The engine (components/pretrain/engine.py) runs the generic loop and asks the objective for
everything that depends on what is being predicted. A new objective is one module here plus one
line in `OBJECTIVES`; the module provides every name in `REQUIRED` (tests/contract/test_components.py
fails on a registered module that lacks one; the README's "Adding an objective" shows the list):

- `DESCRIPTION`: one line for `pretrain.objective`'s help and the loss-curve title
- `PACKING`: what packing must put around a document (block prefix, document separator)
- `build_model(sizes, tokenizer)` and `load_model(init_from)`: a fresh or a continued model
- `training_blocks(blocks, tokenizer, config)`: what the engine draws examples from (`len`, `take`,
  `block_size`): the packed blocks, or a view of them (next-sentence prediction's segment pairs)
- `Batches(tokenizer, config)`: batch preparation (masking, shifting) from a global batch of
  block ids to `(inputs, labels, n_targets)`; seeded, with `state_dict`/`load_state_dict`
- `step_module(model)`: an nn.Module whose forward(*micro_batch) is the summed loss (DDP wraps it);
  it may also name `part_names` and give `take_parts()`, the loss's parts summed since the last
  call (a tensor, one per name, each / n_targets a mean), which the engine logs beside the loss
- `micro_batch(inputs, labels, fixed)` and `fixed_shapes(block_size, micro, config)`: the tensors
  one micro-batch feeds to the step module (fixed shapes for a compiled step)
- `heldout_loss(model, tokenizer, ids, seed)`: mean loss per target on held-out blocks (perplexity = exp)
- `heldout_perplexity(pretrained_dir, blocks, batch_size, mlm_probability, seed)`: evaluate's score
- `CARD`: the model card's words for the architecture, the pretraining and the perplexity
- `MODEL_TYPES`: the `model_type`s of the models it saves (how evaluate finds the objective)
- `train_flops(tokens, targets, seq_len, model_config)`: model FLOPs of the steps (for MFU)
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Annotated

from pydantic import AfterValidator

from components.shared.errors import UserError

# name -> module; imported on first use (torch and transformers are heavy at CLI start-up)
OBJECTIVES = {
    "masked_lm": "components.objectives.masked_lm",
    "causal_lm": "components.objectives.causal_lm",
    "replaced_token": "components.objectives.replaced_token",
}
NAMES = tuple(OBJECTIVES)
# Options of an objective that change what it is made of: (objective, PretrainConfig flag) -> module.
VARIANTS = {("masked_lm", "nsp"): "components.objectives.next_sentence"}

# What every objective module provides: the one list (the contract test and the README read it).
REQUIRED = (
    "DESCRIPTION", "PACKING", "CARD", "MODEL_TYPES", "build_model", "load_model", "Batches", "step_module", "micro_batch", "fixed_shapes",
    "heldout_loss", "heldout_perplexity", "train_flops",
)  # fmt: skip


def unknown(name: str) -> str:
    return f"unknown objective {name!r}: the known ones are {', '.join(NAMES)}; set pretrain.objective to one of them"


def _known(name: str) -> str:
    if name not in NAMES:
        raise ValueError(unknown(name))
    return name


ObjectiveName = Annotated[str, AfterValidator(_known)]  # a config field naming a registered objective: checked where it is read


def get(name: str) -> ModuleType:
    """The objective module registered under `name`."""
    if name not in OBJECTIVES:
        raise UserError(unknown(name))
    return importlib.import_module(OBJECTIVES[name])


def for_pretrain(config) -> ModuleType:
    """The module that trains a PretrainConfig: `pretrain.objective`'s, or its variant for a flag
    that is on (masked_lm with `nsp: true`: next-sentence prediction added)."""
    for (name, flag), module in VARIANTS.items():
        if config.objective == name and getattr(config, flag, False):
            return importlib.import_module(module)
    return get(config.objective)


def of_pretrained(pretrained_dir: Path) -> ModuleType:
    """The objective whose model is saved in `pretrained_dir` (by its config's model_type)."""
    model_type = json.loads((Path(pretrained_dir) / "config.json").read_text()).get("model_type")
    for name in NAMES:
        if model_type in get(name).MODEL_TYPES:
            return get(name)
    raise UserError(f"the pretrained model at {pretrained_dir} is a {model_type!r}, which no objective ({', '.join(NAMES)}) trains: rerun pretrain")
