"""Model FLOPs of a masked-LM step and the matmul peak they are compared with (MFU).

MFU = useful model FLOPs per second / peak FLOPs per second. Useful FLOPs count the matmuls of
the encoder at every position and of the MLM head only where it runs (the masked positions for
LMForge's engine, every position for a dense head; the engine's last layer as it runs, see
`forward_flops`); backward costs twice the forward (PaLM's
convention, appendix B). The peak is either the datasheet number of a known GPU or a matmul
measured in the same process, with the same dtype and thread count, on the same machine.
"""

from __future__ import annotations

import time

# Dense (no sparsity) bf16 tensor-core peaks from the datasheets, FLOP/s.
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A10": 125e12}  # longer names first


def forward_flops(tokens: int, head_positions: int, seq_len: int, hidden: int, layers: int, intermediate: int, vocab: int, sparse_last_layer: bool = False) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward pass over `tokens` tokens in sequences of `seq_len`.

    `sparse_last_layer`: the last encoder layer runs at every token only for its keys and values;
    its queries, attention, output projection and feed-forward run at the `head_positions` alone
    (LMForge's engine: the other rows never reach the loss).
    """
    kv = 4 * hidden * hidden  # keys and values
    rest = 4 * hidden * hidden + 4 * hidden * intermediate + 4 * seq_len * hidden  # Q and O, FFN, QK^T and AV
    head = 2 * hidden * hidden + 2 * hidden * vocab  # transform + decoder, per predicted position
    dense_layers = layers - 1 if sparse_last_layer else layers
    last = tokens * kv + head_positions * rest if sparse_last_layer else 0
    return float(tokens * dense_layers * (kv + rest) + last + head_positions * head)


def train_flops(tokens: int, head_positions: int, seq_len: int, model_config, sparse_last_layer: bool = True) -> float:
    """Forward + backward (3x forward) FLOPs of one step, from a transformers BertConfig (LMForge's
    engine by default: the sparse last layer)."""
    c = model_config
    return 3 * forward_flops(tokens, head_positions, seq_len, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size, sparse_last_layer)


def matmul_peak(device: str = "cpu", dtype=None, n: int | None = None, seconds: float = 0.3) -> float:
    """Best FLOP/s of square matmuls, measured now (same dtype and torch thread count as training)."""
    import torch

    dtype = dtype or torch.float32
    n = n or (8192 if device.startswith("cuda") else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)  # warm-up: thread pool, kernels, caches
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        t0 = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        sync()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def datasheet_peak(device_name: str) -> float | None:
    """The bf16 dense peak of a known GPU from its name (torch.cuda.get_device_name), else None."""
    return next((peak for key, peak in GPU_PEAKS.items() if key in device_name), None)
