"""GPU check: BERT-base masked-LM pretraining with LMForge's engine in bf16, tokens/s and MFU.

One prepared script for whenever an NVIDIA GPU is at hand (an H200 at times):

    python -m bench.gpu_check                       # gpu preset sizes, 300 steps, bf16, one GPU
    python -m bench.gpu_check --compile             # the same with torch.compile (measure the win)
    torchrun --nproc-per-node 8 -m bench.gpu_check  # DDP over a node, global batch x 8
    python -m bench.gpu_check --device cpu --steps 3 --tiny   # smoke test of the script itself

It trains on random tokens (throughput does not depend on the text) through the same
`engine.train` the pretrain stage runs, reads the loss back every `--log-every` steps (as the
stage does), and prints ONE JSON line: steady-state tokens/s after warm-up, model TFLOP/s, MFU
against the datasheet dense bf16 peak of the GPU and against a bf16 matmul peak measured here.
Goal (issue 5): MFU >= 45% on an H200.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import numpy as np

BERT_BASE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072, "max_position": 512, "dropout": 0.1}
TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "max_position": 64, "dropout": 0.1}


class RandomBlocks:
    """`Blocks`-shaped random token ids ([CLS] first), reproducible per index."""

    def __init__(self, n: int, block_size: int, vocab: int, cls_id: int):
        self.n, self.block_size, self.vocab, self.cls_id = n, block_size, vocab, cls_id

    def __len__(self) -> int:
        return self.n

    def take(self, idx) -> np.ndarray:
        out = np.stack([np.random.default_rng(int(i)).integers(5, self.vocab, self.block_size, dtype=np.int32) for i in idx])
        out[:, 0] = self.cls_id
        return out


def tokenizer_for(vocab: int):
    """A WordPiece tokenizer with `vocab` entries (sizes only matter here; built offline)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from components.shared.tokenizer import SPECIAL_TOKENS

    words = {t: i for i, t in enumerate(SPECIAL_TOKENS + [f"w{i}" for i in range(vocab - len(SPECIAL_TOKENS))])}
    tok = Tokenizer(models.WordPiece(vocab=words, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@contextlib.contextmanager
def _profiler(path: str | None, device):
    if not path:
        yield None
        return
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        yield prof


def counted_flops(model, tok, seq: int, vocab: int, device, precision: str) -> tuple[float, float]:
    """(FLOPs torch's FlopCounterMode counts for one forward + backward of 2 masked blocks, the same
    by flops.forward_flops): a check of the formula MFU is computed with."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from components.objectives import masked_lm
    from components.pretrain import engine
    from components.shared import flops

    module = masked_lm.sparse_mlm_module(model)
    ids = torch.from_numpy(RandomBlocks(2, seq, vocab, tok.cls_token_id).take(range(2))).long()
    inputs, labels = masked_lm.Masker(tok, 0.15, 0)(ids)
    layout = masked_lm.masked_layout(labels)
    targets = layout[-1]  # no padding here: every target is a masked position
    with FlopCounterMode(display=False) as counter, engine._autocast(device, precision):
        module(inputs.to(device), *(t.to(device) for t in layout)).backward()
    model.zero_grad(set_to_none=True)
    c = model.config
    formula = flops.train_flops(ids.numel(), len(targets), seq, c)
    return float(counter.get_total_flops()), formula


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30, help="steps left out of the rate (compile, autotuning, allocator)")
    parser.add_argument("--batch", type=int, default=64, help="blocks per step per process")
    parser.add_argument("--seq", type=int, default=512, help="tokens per block")
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--profile", metavar="PATH", help="write torch.profiler's table of kernels by GPU time here (profiles the whole run)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test on a CPU)")
    args = parser.parse_args(argv)

    import torch

    from components.pretrain import engine
    from components.pretrain.pretrain import PretrainConfig
    from components.shared import distributed, flops
    from components.shared.modeling import ModelSizes, build_mlm
    from components.shared.training import Progress, optimizer_and_schedule, seed_everything

    if args.tiny:
        args.seq, args.vocab, args.batch = min(args.seq, 64), min(args.vocab, 1000), min(args.batch, 8)
    seed_everything(0)
    torch.use_deterministic_algorithms(False)  # speed, not bit-reproducibility, is measured here
    torch.backends.cuda.matmul.allow_tf32 = True
    w = distributed.world()
    device = distributed.resolve_device(args.device, w)
    w = distributed.init(device.type)
    tok = tokenizer_for(args.vocab)
    sizes = ModelSizes.model_validate(TINY if args.tiny else BERT_BASE)
    model = build_mlm(sizes, tok).to(device)
    config = PretrainConfig.from_params(
        {
            "max_steps": args.steps,
            "batch_size": args.batch * w.size,
            "learning_rate": 1e-4,
            "warmup_ratio": 0.05,
            "log_every": args.log_every,
            "checkpoint_every": 0,
            "device": args.device,
            "precision": args.precision,
            "compile": args.compile,
            "nproc": w.size,
            "model": sizes.model_dump(),
        },
        "pretrain",
    )
    opt, sched = optimizer_and_schedule(model, config.learning_rate, 0.01, config.warmup_ratio, args.steps, fused=True)
    marks: list[tuple[int, float]] = []

    class Timed(Progress):
        def step(self, step, loss, lr, n, parts=None):
            super().step(step, loss, lr, n, parts)
            marks.append((step, time.perf_counter()))

    blocks = RandomBlocks(10**6, args.seq, args.vocab, tok.cls_token_id)
    progress = Timed("gpu_check", args.steps, 10**9, quiet=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    marks.append((0, time.perf_counter()))
    with _profiler(args.profile, device) as prof:
        engine.train(model, tok, blocks, opt, sched, config, device, w, progress, None, lambda *a: None)
    if prof is not None:
        sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        with open(args.profile, "w") as f:
            f.write(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90))

    warmup_s = next((t for s, t in marks if s >= args.warmup), marks[-1][1]) - marks[0][1]
    after = [m for m in marks if m[0] >= args.warmup]
    if len(after) < 2:  # too few steps for a steady window (smoke test): the whole run
        after = [marks[0], marks[-1]]
    (s0, t0), (s1, t1) = after[0], after[-1]
    tokens_per_s = (s1 - s0) * config.batch_size * args.seq / (t1 - t0)
    masked_per_s = tokens_per_s * config.mlm_probability
    achieved = 3 * flops.forward_flops(tokens_per_s, masked_per_s, args.seq, sizes.hidden_size, sizes.num_layers, sizes.intermediate_size, args.vocab, sparse_last_layer=True)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    measured = flops.matmul_peak(str(device), dtype) * (w.size if device.type == "cuda" else 1)
    sheet = flops.datasheet_peak(name)
    counted, formula = counted_flops(model, tok, args.seq, args.vocab, device, args.precision)
    result = {
        "device": name,
        "processes": w.size,
        "precision": args.precision,
        "compile": args.compile,
        "steps": args.steps,
        "global_batch": config.batch_size,
        "seq": args.seq,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_s": tokens_per_s,
        "model_tflops": achieved / 1e12,
        "mfu_datasheet": achieved / (sheet * w.size) if sheet else None,
        "datasheet_peak_tflops": sheet / 1e12 if sheet else None,
        "mfu_measured_matmul": achieved / measured,
        "measured_matmul_tflops": measured / 1e12 / max(w.size if device.type == "cuda" else 1, 1),
        "warmup_s": warmup_s,
        "final_loss": progress.history[-1]["loss"],
        "flop_counter_vs_formula": counted
        / formula,  # < 1 where the counter misses a kernel (CPU flash attention); > 1 by the attention backward's recomputed product and the last layer's padded query rows, which useful FLOPs leave out
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    if w.is_main:
        print(json.dumps(result), flush=True)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
