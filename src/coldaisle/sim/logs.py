"""The twin's log emitter: each twin Event becomes the line(s) real software prints, in the file it prints to.

Triage reads the twin's logs with the parsers it uses on a real cluster, so every format below follows the
source that prints it (format strings checked against the code or documentation named; payloads are ours):

- kernel (`<host>/kern.log`, as rsyslog writes /var/log/kern.log with Ubuntu's default
  RSYSLOG_TraditionalFileFormat: `%b %e %H:%M:%S <host> kernel: ` then the message, which keeps printk's
  `[%5lu.%06lu] ` uptime prefix (uptime = time - boot time; printk pads to 5 digits, so 259200 s prints
  `[259200.412105]`). The syslog stamp is local time: UTC on these nodes.
  - xid: `NVRM: Xid (PCI:%04x:%02x:%02x): %d, pid=%s, name=%s, %s` (unknown process: `pid='<unknown>',
    name=<unknown>`), NVIDIA/open-gpu-kernel-modules src/nvidia/src/kernel/gpu/rc/kernel_rc.c; message texts
    from driver logs quoted in NVIDIA/open-gpu-kernel-modules#1151, leptonai/gpud#46 and #1174; codes per the
    NVIDIA Xid catalog (docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html).
  - gpu_fell_off_bus: `NVRM: GPU 0000:b1:00.0: GPU has fallen off the bus.` (NV_DEV_PRINTF after Xid 79,
    open-gpu-kernel-modules; older drivers printed `NVRM: GPU at 0000:b1:00.0 has fallen off the bus.`).
  - hung_task: linux kernel/hung_task.c check_hung_task + sched_show_task (5.10/5.15 `task:%-15.15s state:%c
    stack:%5lu pid:%5d ppid:%6d flags:0x%08lx`; sample in GoogleCloudPlatform/compute-image-packages#905).
  - oom_kill: linux mm/oom_kill.c 5.x: `%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d,
    oom_score_adj=%hd`, dump_oom_summary `oom-kill:constraint=...`, and `%s: Killed process %d (%s)
    total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd`.
  - pcie_aer: linux drivers/pci/pcie/aer.c 5.x (dev_fmt "AER: "): `%s error received: %s`, `PCIe Bus Error:
    severity=%s, type=%s, (%s)`, `  device [%04x:%04x] error status/mask=%08x/%08x`, `   [%2d] %-22s%s`;
    sample in GSConnect/gnome-shell-extension-gsconnect#1052 (5.15 says "Corrected"; 6.x says "Correctable").
  - kernel_panic: kernel/panic.c `Kernel panic - not syncing: %s`, dump_stack `CPU: %d PID: %d Comm: %.20s
    Tainted: ...`, `Hardware name:`, `Call Trace:` / ` <TASK>`, `---[ end Kernel panic - not syncing: %s
    ]---`; taint/release/hardware strings from the incident report's panic.
  - host_swap: the twin's allocator spill has no kernel message of its own; the kernel's visible symptom is
    mm/page_alloc.c warn_alloc `%s: page allocation failure: order:%u, mode:%#x(%pGg), nodemask=...`.
- nccl (`<host>/job-<id>.err`): NCCL src/debug.cc prefixes `%s:%d:%d [%d] NCCL INFO ` and
  `\\n%s:%d:%d [%d] %s:%d NCCL WARN ` (the writer adds WARN's blank line); NET/IB and Bootstrap lines as
  in the report's Appendix A and NVIDIA/nccl#529; `Init COMPLETE` as in NVIDIA/nccl-tests#284;
  collective_stall is the last enqueue trace `%s: opCount %lx sendbuff %p ...` (src/enqueue.cc,
  NCCL_DEBUG_SUBSYS=COLL): NCCL prints nothing when a collective hangs, the last op is the evidence;
  bootstrap timeout is misc/socket.cc `socketStartConnect: Connect to %s failed : %s` (NVIDIA/nccl-tests#166;
  NCCL prints the peer as IP<port>, see host_ip).
- torch (`<host>/job-<id>.err`): torch 2.4+ c10 logging `[rank1]:[E626 06:24:44.903881913
  ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(...)` and the
  watchdog's `Exception (either an error or timeout) detected by watchdog at work: N, last enqueued NCCL
  work: M, last completed NCCL work: K.` (XPixelGroup/BasicSR#737, hiyouga/LlamaFactory#6269); CUDA OOM
  text of c10/cuda/CUDACachingAllocator.cpp as in pytorch/pytorch#16417 (torch 2.3 raises
  torch.cuda.OutOfMemoryError; 2.5+ names it torch.OutOfMemoryError), `[rankN]: ` prefix of torchrun.
- slurm (cluster `slurmctld.log`): `[%Y-%m-%dT%H:%M:%S.%3N] `, `sched: Allocate JobId=%u NodeList=%s #CPUs=%u
  Partition=%s`, `update_node: node %s reason set to: %s`, `... state set to DRAINING` (slurmctld sources,
  aws/aws-parallelcluster#5670), job_mgr.c `_job_complete: JobId=%u WEXITSTATUS %d` / `... done`.
- bmc (`<host>/sel.log`): `ipmitool sel elist` columns `%4x | %m/%d/%Y | %H:%M:%S | Fan FAN3 | Lower
  Critical going low  | Asserted` (sosreport/sos#2015, openbmc/openbmc#3617); elist names the sensor where
  `sel list` shows `Fan #0xNN`.
- facility (cluster `facility.log`): RFC 5424 syslog (`<PRI>1 TIMESTAMP HOST APP - MSGID [SD] MSG`, local0,
  SD-ID under RFC 5612's documentation enterprise number 32473): BMS alarms have no one vendor format.
- nvml, coldaisle, unknown sources (`<host>/coldaisle-events.jsonl`): Event.to_json() lines; raw is
  coldaisle's own `coldaisle-agent: <cls> k=v` line. Unknown classes anywhere: `coldaisle-sim: <cls> k=v`.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from coldaisle.sim.events import EventClass as C
from coldaisle.telemetry.events import Event, Severity

__all__ = ["LogWriter", "SensorCsvWriter", "dmesg_prefix", "host_ip", "log_path", "nvrm_pci", "pci_bus_id",
           "render"]

RELEASE = "5.15.0-101-generic #111-Ubuntu"
TAINTED = "Tainted: P           OE    "  # print_tainted(): P, O and E set among 5.15's 18 flags
MAX_OPEN = 64
JSONL = "coldaisle-events.jsonl"
_PCI = {4: ("0000:18:00.0", "0000:3a:00.0", "0000:b1:00.0", "0000:db:00.0"),
        8: ("0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0",
            "0000:9a:00.0", "0000:ab:00.0", "0000:b1:00.0", "0000:db:00.0")}
XID_TEXT = {
    13: "Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Illegal Instruction Parameter",
    31: "Ch 00000008, intr 10000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f1c_40000000. "
        "Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
    43: "Ch 00000008", 45: "Ch 00000008",
    63: "Row Remapper: New row marked for remapping, reset gpu to activate.",
    48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 0, "
        "subpartition 0.",
    79: "GPU has fallen off the bus.", 94: "Contained ECC error", 95: "Uncontained ECC error",
    109: "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005",
}
_AER_BITS = {0: "RxErr", 6: "BadTLP", 7: "BadDLLP", 8: "Rollover", 12: "Timeout", 13: "NonFatalErr"}
_NCCL_OPS = {"allreduce": "AllReduce", "allgather": "AllGather", "reducescatter": "ReduceScatter",
             "broadcast": "Broadcast", "reduce": "Reduce", "send": "Send", "recv": "Recv"}
_JOB_END = {"COMPLETED": "_job_complete: JobId={job_id} WEXITSTATUS 0", "CANCELLED": "_job_complete: "
            "JobId={job_id} WTERMSIG 15", "NODE_FAIL": "Killing JobId={job_id} on failed node {node}"}
_SYSLOG_SEV = {Severity.CRITICAL: 2, Severity.ERROR: 3, Severity.WARNING: 4, Severity.INFO: 6,
               Severity.DEBUG: 7}
_FILES = {"kernel": "kern.log", "bmc": "sel.log", "slurm": "slurmctld.log", "facility": "facility.log"}
_CLUSTER_SOURCES = frozenset({"slurm", "facility"})
_SPACE = re.compile(r"\s")
_ONE_LINE = str.maketrans("\r\n", "  ")  # a field value must not split one printed line in two
_NO_PID = "pid='<unknown>', name=<unknown>"
_JOB_FAILED = "_job_complete: JobId={job_id} WEXITSTATUS 1"
_SD_REPL = r"\\\g<0>"
_SD_ESCAPE = re.compile(r'["\\\]]')  # RFC 5424 6.3.3: '"', '\' and ']' are escaped in PARAM-VALUE
_DEFAULTS: dict[str, Any] = {
    "process": "python3", "seconds": 120, "ppid": 1, "uid": 1000, "gpu": 0, "rank": 0, "nranks": 512,
    "numel": 1048576, "count": 1048576, "seq": 0, "op": "ALLREDUCE", "partition": "gpu", "kind": "Corrected",
    "error": "Physical Layer", "reason": "Fatal exception in interrupt", "cpu": 48, "by": "sre"}


def pci_bus_id(gpu: int, gpus_per_node: int = 4) -> str:
    """Bus id of local GPU `gpu`, ascending as NVML orders them; gpu 2 of 4 (6 of 8) is the report's b1."""
    if not 0 <= gpu < gpus_per_node <= 16:
        raise ValueError(f"gpu {gpu} out of range for {gpus_per_node} GPUs per node")
    table = _PCI.get(4 if gpus_per_node <= 4 else 8 if gpus_per_node <= 8 else 16)
    return table[gpu] if table else f"0000:{0x10 + 15 * gpu:02x}:00.0"


def nvrm_pci(bus_id: str) -> str:
    """`0000:b1:00.0` -> `0000:b1:00`, the shortened form NVRM Xid lines print."""
    return bus_id.rsplit(".", 1)[0] if bus_id.count(":") == 2 else bus_id


def host_ip(host: str) -> str:
    """Deterministic IP of a twin host (node-gpu-45 -> 10.0.0.45): NCCL names peers by IP, never by name."""
    m = re.search(r"(\d+)$", host)
    n = int(m.group(1)) if m else zlib.crc32(host.encode()) % 65000
    return f"10.0.{n // 256}.{n % 256}"


def dmesg_prefix(uptime: float) -> str:
    """printk's `[%5lu.%06lu] ` prefix for seconds since boot (negative clamps to zero)."""
    us = max(0, round(uptime * 1_000_000))
    return f"[{us // 1_000_000:5d}.{us % 1_000_000:06d}] "


def _size(n: float) -> str:
    """Byte counts as CUDACachingAllocator's format_size prints them."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n > scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} bytes"


def _sd(fields: Mapping[str, Any]) -> str:
    """RFC 5424 SD-PARAMs carrying the event's fields, values escaped."""
    return " ".join(f'{k}="{_SD_ESCAPE.sub(_SD_REPL, str(v))}"' for k, v in sorted(fields.items()))


def _aer_status(c: _Ctx) -> int:
    """The AER status word: the event's hex `status`, else the layer's usual bit (RxErr, BadTLP)."""
    return int(str(c.get("status") or ("1" if str(c["error"]).startswith("Phys") else "40")), 16)


def _gpu_pci(c: _Ctx) -> str:
    """Bus id from the GPU index when the event names none (gpu >= 4 implies an 8-GPU node)."""
    gpu = int(c["gpu"])
    return pci_bus_id(gpu, int(c.get("gpus_per_node", 4 if gpu < 4 else 8 if gpu < 8 else 16)))


# Values the templates need beyond the event's own fields, computed only when a template asks for them.
_DERIVED: dict[str, Callable[[_Ctx], Any]] = {
    "pci": _gpu_pci, "device_pci": _gpu_pci, "tid": lambda c: c["pid"],
    "nvrm": lambda c: nvrm_pci(str(c["pci"])), "comm": lambda c: str(c["process"])[:15],
    "who": lambda c: f"pid={c['pid']}, name={c['process']}" if c.get("pid") else _NO_PID,
    "text": lambda c: XID_TEXT.get(int(c["xid"]), ""),
    "task": lambda c: f"PID: {c['pid']} Comm: {str(c['process'])[:20]}" if "pid" in c else
    f"PID: 0 Comm: swapper/{c['cpu']}",
    "vm": lambda c: int(c["anon_rss_kb"]) + 33554432,
    "pgtables": lambda c: int(c["anon_rss_kb"]) // 512 + 1024,
    "memcg": lambda c: f"/system.slice/slurmstepd.scope/job_{c['job']}/step_0/user/task_0" if "job" in c else
    "/user.slice",
    "aer_status": _aer_status, "aer_bit": lambda c: (c["aer_status"] & -c["aer_status"]).bit_length() - 1,
    "aer_agent": lambda c: "Transmitter ID" if c["aer_bit"] in (8, 12) else "Receiver ID",
    "aer_name": lambda c: _AER_BITS.get(c["aer_bit"], "Unknown Error Bit"),
    "aer_first": lambda c: " (First)" if c["aer_bit"] == 0 else "",
    "nccl": lambda c: f"{c['host']}:{c['pid']}:{c['tid']} [{c['gpu']}]",
    "ip": lambda c: host_ip(str(c["host"])), "peer_ip": lambda c: host_ip(str(c["peer"])),
    "comm_ptr": lambda c: f"0x{0x55D0C0000000 + int(c['rank']) * 0x1000:x}",
    "bus": lambda c: f"{int(nvrm_pci(str(c['pci'])).replace(':', ''), 16) << 4:x}",
    "comm_id": lambda c: f"0x{zlib.crc32(str(c.get('job')).encode()):x}",
    "nccl_op": lambda c: _NCCL_OPS.get(re.sub(r"[^a-z]", "", str(c["op"]).lower()), "AllReduce"),
    "op_count": lambda c: f"{int(c['seq']):x}", "op_type": lambda c: str(c["op"]).upper(),
    "rank_prefix": lambda c: f"[rank{c['rank']}]: " if "rank" in c.event.fields else "",
    "tried": lambda c: _size(int(c["tried_bytes"])), "total": lambda c: _size(int(c["total_bytes"])),
    "free": lambda c: _size(int(c["free_bytes"])), "allocated": lambda c: _size(int(c["allocated_bytes"])),
    "in_use": lambda c: _size(int(c["total_bytes"]) - int(c["free_bytes"])),
    "spare": lambda c: _size(c.get("reserved_unallocated_bytes", max(0, int(c["total_bytes"]) - int(
        c["free_bytes"]) - int(c["allocated_bytes"]) - (512 << 20)))),
    "nodelist": lambda c: "node-gpu-01" if int(c["nodes"]) == 1 else f"node-gpu-[01-{int(c['nodes']):02d}]",
    "cpus": lambda c: 128 * int(c["nodes"]), "node": lambda c: c["host"],
    "job_end": lambda c: _JOB_END.get(str(c.get("state")), _JOB_FAILED).format_map(c),
    "sel_id": lambda c: int(c.event.time) % 0xFFF0 + 1, "date": lambda c: f"{c.event.utc:%m/%d/%Y}",
    "clock": lambda c: f"{c.event.utc:%H:%M:%S}",
    "power_unit": lambda c: "Power cycle | Asserted" if c["state"] == "cycle" else "Power off/down | Deasserted",
    "glog": lambda c: f"{c.event.utc.month}{c.event.utc:%d %H:%M:%S}.{c.event.utc.microsecond * 1000:09d}",
    "seq_before": lambda c: int(c["seq"]) - 1,
    "syslog": lambda c: f"<{128 + _SYSLOG_SEV[c.event.severity]}>1 {c.event.utc:%Y-%m-%dT%H:%M:%S}."
    f"{c.event.utc.microsecond // 1000:03d}Z {c['host']} bms -",
    "sd": lambda c: _sd(c.event.fields),
}


class _Ctx(dict[str, Any]):
    """Template context: the event's fields over defaults; derived keys are computed on first use."""

    def __init__(self, event: Event) -> None:
        super().__init__({**_DEFAULTS, **event.fields, "host": event.host})
        self.event = event

    def __missing__(self, key: str) -> Any:
        value = self[key] = _DERIVED[key](self)  # KeyError for unknown keys: render falls back to generic
        return value


_TRACE = (" __schedule+0x2cd/0x890", " schedule+0x69/0x110", " schedule_timeout+0x206/0x2d0",
          " __down_common+0x10d/0x1e0", " down+0x47/0x60", " os_acquire_mutex+0x3c/0x70 [nvidia]")
_TEMPLATES: dict[str, tuple[str, ...]] = {
    C.XID: ("NVRM: Xid (PCI:{nvrm}): {xid}, {who}, {text}",),
    C.GPU_FELL_OFF_BUS: ("NVRM: GPU {pci}: GPU has fallen off the bus.",),
    C.HUNG_TASK: ("INFO: task {comm}:{pid} blocked for more than {seconds} seconds.",
                  f"      {TAINTED} {RELEASE}",
                  '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
                  "task:{comm:<15} state:D stack:    0 pid:{pid:>5} ppid:{ppid:>6} flags:0x00004002",
                  "Call Trace:", " <TASK>", *_TRACE, " </TASK>"),
    C.OOM_KILL: ("{process} invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, "
                 "oom_score_adj=0",
                 "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,global_oom,"
                 "task_memcg={memcg},task={process},pid={pid},uid={uid}",
                 "Out of memory: Killed process {pid} ({process}) total-vm:{vm}kB, anon-rss:{anon_rss_kb}kB, "
                 "file-rss:524288kB, shmem-rss:0kB, UID:{uid} pgtables:{pgtables}kB oom_score_adj:0"),
    C.PCIE_AER: ("pcieport {pci}: AER: {kind} error received: {device_pci}",
                 "nvidia {device_pci}: AER: PCIe Bus Error: severity={kind}, type={error}, ({aer_agent})",
                 "nvidia {device_pci}: AER:   device [10de:2331] error status/mask={aer_status:08x}/0000e000",
                 "nvidia {device_pci}: AER:    [{aer_bit:2d}] {aer_name:<22}{aer_first}"),
    C.KERNEL_PANIC: ("Kernel panic - not syncing: {reason}", f"CPU: {{cpu}} {{task}} {TAINTED} {RELEASE}",
                     "Hardware name: Supermicro AS -4124GS-TNR/H12DSG-O-MS, BIOS 2.4 05/24/2023",
                     "Call Trace:", " <TASK>", " dump_stack_lvl+0x4a/0x63", " panic+0x10d/0x2f3",
                     " oops_end.cold+0x9/0x1b", " die+0x43/0x60", " </TASK>",
                     "Kernel Offset: 0x2a200000 from 0xffffffff81000000 "
                     "(relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
                     "---[ end Kernel panic - not syncing: {reason} ]---"),
    C.HOST_SWAP: ("{comm}: page allocation failure: order:4, mode:0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), "
                  "nodemask=(null),cpuset=/,mems_allowed=0-1",),
    C.NCCL_INIT: ("{nccl} NCCL INFO Bootstrap : Using eth0:{ip}<0>",
                  "{nccl} NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE ; OOB eth0:{ip}<0>",
                  "{nccl} NCCL INFO Using network IB",
                  "{nccl} NCCL INFO ncclCommInitRank comm {comm_ptr} rank {rank} nranks {nranks} cudaDev "
                  "{gpu} nvmlDev {gpu} busId {bus} commId {comm_id} - Init COMPLETE"),
    C.COLLECTIVE_STALL: ("{nccl} NCCL INFO {nccl_op}: opCount {op_count} sendbuff 0x7f3a40000000 recvbuff "
                         "0x7f3a40000000 count {count} datatype 7 op 0 root 0 comm {comm_ptr} "
                         "[nranks={nranks}] stream 0x55d0c1a2b3c0",),
    C.NCCL_BOOTSTRAP_TIMEOUT: ("{nccl} misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to "
                               "{peer_ip}<{port}> failed : Connection timed out",),
    C.NCCL_WATCHDOG_TIMEOUT: ("[rank{rank}]:[E{glog} ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog caught "
                              "collective operation timeout: WorkNCCL(SeqNum={seq}, OpType={op_type}, "
                              "NumelIn={numel}, NumelOut={numel}, Timeout(ms)={timeout_ms}) ran for {ran_ms} "
                              "milliseconds before timing out.",
                              "[rank{rank}]:[E{glog} ProcessGroupNCCL.cpp:1785] [PG ID 0 PG GUID 0(default_pg) "
                              "Rank {rank}] Exception (either an error or timeout) detected by watchdog at work: "
                              "{seq}, last enqueued NCCL work: {seq}, last completed NCCL work: {seq_before}."),
    C.CUDA_OOM: ("{rank_prefix}torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried}. "
                 "GPU {gpu} has a total capacity of {total} of which {free} is free. Including non-PyTorch "
                 "memory, this process has {in_use} memory in use. Of the allocated memory {allocated} is "
                 "allocated by PyTorch, and {spare} is reserved by PyTorch but unallocated. If reserved but "
                 "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
                 "to avoid fragmentation.  See documentation for Memory Management  "
                 "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)",),
    C.JOB_START: ("sched: Allocate JobId={job_id} NodeList={nodelist} #CPUs={cpus} Partition={partition}",),
    C.JOB_END: ("{job_end}", "_job_complete: JobId={job_id} done"),
    C.NODE_DRAIN: ("update_node: node {host} reason set to: {reason}",
                   "update_node: node {host} state set to DRAINING"),
    C.POWER_CYCLE: ("{sel_id:4x} | {date} | {clock} | Power Unit #0x01 | {power_unit}",),
    C.FAN_FAILURE: ("{sel_id:4x} | {date} | {clock} | Fan {fan} | Lower Critical going low  | Asserted",),
    C.COOLING_FAILURE: ("{syslog} COOLING [coldaisle@32473 {sd}] Row {row} cooling capacity lost: "
                        "{capacity_kw_before} kW -> {capacity_kw_after} kW",),
    C.EMERGENCY_POWER_OFF: ("{syslog} EPO [coldaisle@32473 {sd}] Emergency power off rack {rack} by {by}: "
                            "{reason}",),
    C.LINK_DOWN: ("mlx5_core {pci} {interface}: Link down",),
    C.NCCL_NET_ERROR: ("{nccl} NCCL WARN NET/IB : Got completion from peer {peer_ip}<{port}> with error {status}, "
                       "opcode 0, len 0, vendor err 129 (Recv)",),
    C.NODE_DOWN: ("error: Nodes {host} not responding, setting DOWN", "update_node: node {host} reason set to: "
                  "{reason}"),
    C.RANK_CRASH: ("[rank{rank}]: RuntimeError: {error}",),
}
_AGENT_CLASSES = frozenset({C.THERMAL_SLOWDOWN, C.THERMAL_SHUTDOWN, C.SIGNAL_SENT, C.POWER_CAP})


def _kv(tag: str, e: Event) -> list[str]:
    """A clearly structured `tag: cls k=v ...` line, so classes without a real format still parse."""
    pairs = " ".join(f"{k}={_SPACE.sub('_', str(v))}" for k, v in sorted(e.fields.items(), key=str))
    return [f"{tag}: {e.cls} {pairs}".rstrip()]


def _bodies(e: Event) -> list[str]:
    """The printed message(s) for one event, without the file's timestamp prefix."""
    if e.cls in _AGENT_CLASSES:
        return _kv("coldaisle-agent", e)
    templates = _TEMPLATES.get(e.cls)
    if templates is None:
        return _kv("coldaisle-sim", e)
    ctx = _Ctx(e)
    return [t.format_map(ctx) for t in templates]


def _prefix(e: Event, boot_time: float) -> str:
    """The per-line timestamp the file's writer adds: dmesg uptime for the kernel, slurmctld's ISO stamp."""
    if e.source == "kernel":
        return f"{e.utc:%b} {e.utc.day:>2} {e.utc:%H:%M:%S} {e.host} kernel: {dmesg_prefix(e.time - boot_time)}"
    if e.source == "slurm":
        return f"[{e.utc:%Y-%m-%dT%H:%M:%S}.{e.utc.microsecond // 1000:03d}] "
    return ""


def render(event: Event, *, boot_time: float) -> list[Event]:
    """The event with `raw` filled, one Event per printed line; an already-rendered event passes through."""
    if event.raw:
        return [event]
    try:
        bodies = _bodies(event)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
        bodies = _kv("coldaisle-sim", event)
    try:
        head = _prefix(event, boot_time)
    except (ValueError, OverflowError, OSError):  # a NaN/inf time has no printable stamp
        head = ""
    return [replace(event, raw=head + body.translate(_ONE_LINE),
                    severity=event.severity if i == 0 else Severity.INFO) for i, body in enumerate(bodies)]


def _safe(name: str) -> str:
    """A host or job name usable as one path component (no separators, no dot-dirs)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return clean if clean.strip(".") else "_"


def log_path(event: Event) -> PurePosixPath:
    """Where a real node or cluster keeps this event's lines, relative to the log root."""
    if event.source in ("nccl", "torch"):
        job = event.fields.get("job_id", event.fields.get("job", "unknown"))
        return PurePosixPath(_safe(event.host), f"job-{_safe(str(job))}.err")
    name = _FILES.get(event.source, JSONL)
    return PurePosixPath(name) if event.source in _CLUSTER_SOURCES else PurePosixPath(_safe(event.host), name)


class LogWriter:
    """Appends rendered twin events under `root`, with at most `max_open` files open (LRU) for 128+ nodes."""

    def __init__(self, root: Path, *, boot_times: Mapping[str, float] | None = None,
                 default_boot_time: float, max_open: int = MAX_OPEN) -> None:
        self.root = Path(root)
        self._boot = dict(boot_times or {})
        self._default_boot = default_boot_time
        self._max_open = max(1, max_open)
        self._open: OrderedDict[Path, IO[str]] = OrderedDict()

    @property
    def open_count(self) -> int:
        """How many files are open now (never above max_open)."""
        return len(self._open)

    def _handle(self, path: Path) -> IO[str]:
        """The open handle for `path`, closing the least recently used one first when at the bound."""
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        while len(self._open) >= self._max_open:
            self._open.popitem(last=False)[1].close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._open[path] = handle = path.open("a", encoding="utf-8")
        return handle

    def write(self, events: Iterable[Event]) -> None:
        """Render each event and append its lines to its file (NCCL WARN keeps its leading blank line)."""
        for event in events:
            path = self.root / log_path(event)
            out = self._handle(path)
            for line in render(event, boot_time=self._boot.get(event.host, self._default_boot)):
                if path.name == JSONL:
                    out.write(json.dumps(line.to_json(), default=str) + "\n")
                else:
                    out.write(("\n" if " NCCL WARN " in line.raw else "") + line.raw + "\n")

    def close(self) -> None:
        """Flush and close every open file."""
        while self._open:
            self._open.popitem(last=False)[1].close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class SensorCsvWriter:
    """`time,sensor,celsius` rows (ISO-8601 UTC) for facility sensor series such as Rack 4 shelf 2."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._csv.writerow(["time", "sensor", "celsius"])

    def write_row(self, time: float, sensor: str, value: float) -> None:
        """Append one reading."""
        stamp = datetime.fromtimestamp(time, tz=UTC)
        self._csv.writerow([f"{stamp:%Y-%m-%dT%H:%M:%SZ}", sensor, f"{value:.1f}"])

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> SensorCsvWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
