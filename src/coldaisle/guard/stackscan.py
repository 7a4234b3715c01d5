"""Read a `py-spy dump` and say where a rank is: inside a collective, in I/O, or somewhere else.

The frame tables are data: a Python frame is `function (path:line)`, a native one `symbol (library)`.
A collective is a `torch.distributed` (or DeepSpeed / Megatron) communication call, a `Work.wait`, or a
native NCCL / gloo entry point; I/O is a checkpoint save, a file write or flush, an fsync; loading is waiting
on a data loader for the next batch; evaluation is a frame of an evaluation pass (`evaluate`,
`validation_step`). py-spy lists the innermost frame first, so the first match from the top is what the thread
is doing now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# Python-level collectives: function names as torch.distributed (distributed_c10d.py) and DeepSpeed's
# comm module spell them; only counted when the frame's file is a distributed communication module.
COLLECTIVE_FUNCTIONS = frozenset({
    "all_reduce", "all_reduce_coalesced", "all_gather", "all_gather_into_tensor", "all_gather_object",
    "all_gather_coalesced", "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "all_to_all_single",
    "broadcast", "broadcast_object_list", "reduce", "gather", "gather_object", "scatter", "scatter_object_list",
    "barrier", "monitored_barrier", "send", "recv", "batch_isend_irecv", "wait", "inference_all_reduce",
})
COLLECTIVE_FILES = re.compile(r"torch/distributed/|deepspeed/comm/|megatron/core/parallel_state|"
                              r"megatron/core/tensor_parallel/mappings")
# Native frames (py-spy --native): NCCL and gloo entry points, c10d's Work waits.
COLLECTIVE_NATIVE = re.compile(r"\bnccl[A-Z]\w*|gloo::(allreduce|allgather|broadcast|barrier|reduce|alltoall|"
                               r"transport::\w+::UnboundBuffer::wait)|c10d::\w*Work\w*::wait|"
                               r"c10d::ProcessGroup\w*::(allreduce|barrier|allgather|broadcast)")
IO_FUNCTIONS = re.compile(r"^(save|_save|_legacy_save|fsync|fdatasync|flush|write|writelines|sync)$")
IO_FILES = re.compile(r"torch/serialization\.py|torch/distributed/checkpoint/|safetensors/|"
                      r"deepspeed/runtime/checkpoint_engine/|orbax/|h5py/")
IO_NATIVE = re.compile(r"^(__libc_write|write|__write_nocancel|fsync|fdatasync|__libc_pwrite\w*|pwrite\w*|"
                       r"sync_file_range|__GI___libc_write|msync)$")
# Waiting for the next batch: PyTorch's DataLoader and the loaders large jobs use instead of it.
LOADER_FILES = re.compile(r"torch/utils/data/|webdataset/|nvidia/dali/|ffcv/|streaming/base/|"
                          r"datasets/iterable_dataset|megatron/core/datasets/|torchdata/")
# An evaluation pass: the names Lightning, Hugging Face's Trainer, Megatron and hand-written loops give it.
EVAL_FUNCTIONS = re.compile(r"^(_?evaluate|evaluation_loop|_run_evaluate|run_evaluation|eval_step|evaluation_step|"
                            r"validate|validation_step|validation_loop|_run_validation|prediction_step|predict_step)$")

_THREAD = re.compile(r'^Thread (0x[0-9a-fA-F]+|\d+) \(([^)]*)\)(?:: "(.*)")?')
_PY_WHERE = re.compile(r":\d+$")
_FRAME = re.compile(r"^\s+(?P<fn>.+?) \((?P<where>[^()]*)\)\s*$")


class Activity(StrEnum):
    """What a thread (or a rank) is doing at the moment of the dump."""

    COLLECTIVE = "collective"
    IO = "io"
    LOADING = "loading"  # waiting for the next batch from a data loader
    EVALUATION = "evaluation"  # inside an evaluation pass
    OTHER = "other"
    UNKNOWN = "unknown"  # no stack could be taken


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One line of a dump: a Python `function (file:line)` or a native `symbol (library)`."""

    function: str
    where: str

    @property
    def python(self) -> bool:
        """A Python frame (`file.py:12`, `<string>:1`), not a native one (`libc.so.6`, an address)."""
        return _PY_WHERE.search(self.where) is not None

    def __str__(self) -> str:
        return f"{self.function} ({self.where})"


@dataclass(frozen=True, slots=True)
class Thread:
    """One thread's frames, innermost first, and what they say it is doing."""

    ident: str
    status: str  # py-spy's "active" / "idle" / "gil" ...
    name: str
    frames: tuple[StackFrame, ...]
    activity: Activity
    at: StackFrame | None  # the frame that decided the activity (the collective call, the write ...)


@dataclass(frozen=True, slots=True)
class StackReport:
    """A whole process's dump, read."""

    threads: tuple[Thread, ...] = ()
    error: str | None = None  # why no stack could be taken
    main: Thread | None = field(default=None)

    @property
    def activity(self) -> Activity:
        """The process's activity: its main thread's (the training loop), else the first thread's."""
        lead = self.main or (self.threads[0] if self.threads else None)
        return lead.activity if lead else Activity.UNKNOWN


def classify_frames(frames: tuple[StackFrame, ...]) -> tuple[Activity, StackFrame | None]:
    """A collective anywhere on the stack wins (its socket writes are not checkpoint I/O), then I/O, then a data
    loader, then an evaluation pass."""
    for fr in frames:
        if COLLECTIVE_NATIVE.search(fr.function) or (
                fr.function.rsplit(".", 1)[-1] in COLLECTIVE_FUNCTIONS and COLLECTIVE_FILES.search(fr.where)):
            return Activity.COLLECTIVE, _python_caller(frames, fr)
    for fr in frames:
        if IO_NATIVE.match(fr.function) or IO_FILES.search(fr.where) or (
                IO_FUNCTIONS.match(fr.function.rsplit(".", 1)[-1]) and ".py" in fr.where):
            return Activity.IO, _python_caller(frames, fr)
    for fr in frames:
        if fr.python and LOADER_FILES.search(fr.where):
            return Activity.LOADING, fr
    for fr in frames:
        if fr.python and EVAL_FUNCTIONS.match(fr.function.rsplit(".", 1)[-1]):
            return Activity.EVALUATION, fr
    return Activity.OTHER, next((f for f in frames if f.python), frames[0] if frames else None)


def _python_caller(frames: tuple[StackFrame, ...], hit: StackFrame) -> StackFrame:
    """For a native hit, the first Python frame above it names the call a person recognises."""
    if hit.python:
        return hit
    after = frames[frames.index(hit):]
    return next((f for f in after if f.python), hit)


def parse_dump(text: str) -> StackReport:
    """Parse py-spy's `dump` output; text that is not a dump is kept as the error."""
    threads: list[Thread] = []
    head: tuple[str, str, str] | None = None
    frames: list[StackFrame] = []

    def close() -> None:
        if head is not None:
            act, at = classify_frames(tuple(frames))
            threads.append(Thread(head[0], head[1], head[2], tuple(frames), act, at))

    for line in text.splitlines():
        m = _THREAD.match(line)
        if m:
            close()
            head, frames = (m.group(1), m.group(2).strip(), m.group(3) or ""), []
            continue
        f = _FRAME.match(line)
        if head is not None and f and not line.lstrip().startswith(("Process ", "Python v")):
            frames.append(StackFrame(f.group("fn").strip(), f.group("where").strip()))
    close()
    if not threads:
        return StackReport(error=text.strip().splitlines()[0] if text.strip() else "empty dump")
    main = next((t for t in threads if t.name == "MainThread"), None)
    return StackReport(tuple(threads), None, main)
