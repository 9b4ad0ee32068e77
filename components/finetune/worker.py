"""torchrun entry point of finetune: `python -m components.finetune.worker request.json` on every rank.

`distributed.launch` writes the request (the stage function's arguments) and reads back rank 0's
result file: the metrics, or the one-line reason of a UserError.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from components.finetune.finetune import FinetuneConfig, run
from components.shared import distributed
from components.shared.errors import UserError


def main(request_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    config = FinetuneConfig.model_validate(request["config"])
    try:
        metrics = run(Path(request["cleaned_dir"]), Path(request["pretrained_dir"]), Path(request["out_dir"]), config)
    except UserError as exc:
        if distributed.world().is_main:
            distributed.write_result(request["result_file"], {"error": str(exc)})
        raise SystemExit(2) from None
    if distributed.world().is_main:
        distributed.write_result(request["result_file"], {"metrics": metrics})


if __name__ == "__main__":
    main(sys.argv[1])
