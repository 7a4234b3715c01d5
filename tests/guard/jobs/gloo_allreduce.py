"""A 2-rank data-parallel loop on torch.distributed (gloo): one all_reduce of the gradients per step.

Launched by torchrun. `--skip-at N` makes rank 1 skip its all_reduce at step N: it takes a "bad batch"
path that fetches a replacement batch from a loader that never delivers, so rank 1 sits outside any
collective while rank 0 waits in all_reduce (the report's node-gpu-88). Without it, the job runs to the end.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist

import coldaisle


def next_batch_after_bad_one(step: int) -> torch.Tensor:
    """The replacement batch: a loader queue that never fills (the straggler's real bug lives here)."""
    pending: list[torch.Tensor] = []
    while not pending:
        time.sleep(0.05)
    return pending[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip-at", type=int, default=-1)
    ap.add_argument("--step-s", type=float, default=0.05)
    ap.add_argument("--no-progress", action="store_true", help="never call coldaisle.progress()")
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    weights = torch.ones(256)
    for step in range(args.steps):
        grad = torch.full((256,), float(rank + step))
        time.sleep(args.step_s)  # the forward/backward pass
        if rank == 1 and step == args.skip_at:
            print(f"rank 1: bad batch at step {step}, skipping the all_reduce", flush=True)
            grad = next_batch_after_bad_one(step)
        else:
            dist.all_reduce(grad)
        weights -= 0.001 * grad
        if not args.no_progress:
            coldaisle.progress(step=step)
    dist.barrier()
    print(f"rank {rank} done: {float(weights.sum()):.3f} pid {os.getpid()}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
