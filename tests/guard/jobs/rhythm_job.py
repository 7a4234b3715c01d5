"""A data-parallel training loop with a realistic rhythm, on torch.distributed (gloo, CPU), launched by torchrun.

Each step draws a batch from a real `DataLoader` (one worker), computes `--step-s` seconds' worth of matrix
products on one thread (a fixed amount of work, timed at start; lognormal jitter `--jitter`), all-reduces its
gradients and calls `coldaisle.progress()`. On top of that, the pauses a real run has, none of them a hang:
  --checkpoint-every N  rank 0 writes a checkpoint with `torch.save` and fsync for `--checkpoint-s` seconds
                        while the other ranks wait in a barrier;
  --eval-every N        every rank runs `evaluate()` for `--eval-s` seconds (no progress reported), then
                        all-reduces its metric;
  --stall-at N          rank `--stall-rank`'s data-loader worker takes `--stall-s` seconds over one batch.
And the faults:
  --slow-rank R         rank R does `--slow-factor` times the work of the others every step (fail-slow);
  --hang-at N --hang-kind skip|crossed
                        skip: rank 1 leaves the schedule for a replacement batch that never comes while rank 0
                        waits in all_reduce; crossed: rank 1 waits in recv() for a tensor rank 0 never sends
                        while rank 0 waits in all_reduce (every rank in a collective: a deadlock).
`--phases` wraps the checkpoint and the evaluation in `coldaisle.phase(...)`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import tempfile
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

import coldaisle


class Batches(Dataset[torch.Tensor]):
    """Batches made on demand; one index of one rank takes `stall_s` (a slow read of a shard)."""

    def __init__(self, n: int, stall_at: int, stall_s: float) -> None:
        self.n, self.stall_at, self.stall_s = n, stall_at, stall_s

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == self.stall_at:
            time.sleep(self.stall_s)
        return torch.full((256,), float(i))


RATE = [0.0]  # matrix products per second on an idle core, agreed by the ranks at start (calibrate)


def calibrate(a: torch.Tensor) -> None:
    """Products per second, averaged over the ranks: a step is then a fixed amount of work, as on a GPU, and a
    rank that the host's scheduler starves takes longer without doing more (its peers wait, they do not work)."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        a = torch.tanh(a @ a)
        n += 1
    rate = torch.tensor([n / (time.perf_counter() - t0)])
    dist.all_reduce(rate)
    RATE[0] = float(rate[0]) / dist.get_world_size()


def compute(seconds: float, a: torch.Tensor) -> torch.Tensor:
    """`seconds` worth of matrix products on this thread at the agreed rate (a forward and backward pass)."""
    for _ in range(max(1, round(seconds * RATE[0]))):
        a = torch.tanh(a @ a)
    return a


def save_checkpoint(path: str, seconds: float) -> None:
    """`torch.save` shard after shard with an fsync each, for about `seconds` (a slow parallel filesystem)."""
    end = time.perf_counter() + seconds
    shard = torch.randn(256 * 1024)  # 1 MiB
    i = 0
    with open(path, "wb") as fh:
        while time.perf_counter() < end:
            if fh.tell() > 64 * 2**20:
                fh.seek(0)
            torch.save({"shard": i, "weights": shard}, fh)
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.02)
            i += 1


def evaluate(seconds: float, a: torch.Tensor) -> torch.Tensor:
    """An evaluation pass: compute, no progress reported, then the ranks agree on the metric."""
    a = compute(seconds, a)
    metric = torch.tensor([float(a.abs().mean())])
    dist.all_reduce(metric)
    return a


def next_batch_after_bad_one() -> torch.Tensor:
    """The replacement batch: a queue that never fills (the straggler's real bug lives here)."""
    pending: list[torch.Tensor] = []
    while not pending:
        time.sleep(0.05)
    return pending[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step-s", type=float, default=0.5)
    ap.add_argument("--jitter", type=float, default=0.25, help="sigma of the lognormal step-time jitter")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--checkpoint-s", type=float, default=25.0)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--eval-s", type=float, default=40.0)
    ap.add_argument("--stall-at", type=int, default=-1)
    ap.add_argument("--stall-s", type=float, default=15.0)
    ap.add_argument("--stall-rank", type=int, default=1)
    ap.add_argument("--slow-rank", type=int, default=-1)
    ap.add_argument("--slow-factor", type=float, default=1.4)
    ap.add_argument("--hang-at", type=int, default=-1)
    ap.add_argument("--hang-kind", choices=("skip", "crossed"), default="skip")
    ap.add_argument("--phases", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rng = random.Random(args.seed * 1000 + rank)
    stall = args.stall_at if rank == args.stall_rank else -1
    loader = iter(DataLoader(Batches(args.steps + 1, stall, args.stall_s), batch_size=None, num_workers=1,
                             prefetch_factor=1))
    a = torch.randn(96, 96) / 10
    calibrate(a)
    ckpt = os.path.join(tempfile.gettempdir(), f"coldaisle-ckpt-{os.getpid()}.pt")
    phase = coldaisle.phase if args.phases else (lambda _name: contextlib.nullcontext())
    try:
        for step in range(args.steps):
            batch = next(loader)
            work = args.step_s * math.exp(rng.gauss(0.0, args.jitter) - args.jitter**2 / 2)
            a = compute(work * (args.slow_factor if rank == args.slow_rank else 1.0), a)
            grad = batch + float(a[0, 0])
            if step == args.hang_at and rank == 1:
                print(f"rank 1: {args.hang_kind} hang at step {step}", flush=True)
                if args.hang_kind == "skip":
                    grad = next_batch_after_bad_one()
                else:
                    dist.recv(grad, src=0)
            dist.all_reduce(grad)
            coldaisle.progress(step=step)
            if args.checkpoint_every and step % args.checkpoint_every == args.checkpoint_every - 1:
                with phase("checkpoint"):
                    if rank == 0:
                        save_checkpoint(ckpt, args.checkpoint_s)
                    dist.barrier()
            if args.eval_every and step % args.eval_every == args.eval_every - 1:
                with phase("evaluation"):
                    a = evaluate(args.eval_s, a)
        dist.barrier()
        print(f"rank {rank} done after {args.steps} steps", flush=True)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(ckpt)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
