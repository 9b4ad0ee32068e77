"""torchrun entry point of pretrain: `python -m components.pretrain.worker request.json` on every rank.

`distributed.launch` writes the request (the stage function's arguments) and reads back rank 0's
result file (`distributed.serve`): the metrics, or the one-line reason of a UserError.
"""

from __future__ import annotations

import sys
from pathlib import Path

from components.pretrain.pretrain import PretrainConfig, run
from components.shared import distributed


def main(request_file: str) -> None:
    distributed.serve(
        request_file,
        lambda r: run(Path(r["cleaned_dir"]), Path(r["out_dir"]), PretrainConfig.model_validate(r["config"]), Path(r["checkpoint_dir"])),
    )


if __name__ == "__main__":
    main(sys.argv[1])
