"""The mapping file: how a site that relabelled dcgm-exporter's series names them, and what it does not have.

```yaml
labels: {node: kubernetes_node, job: [slurm_job_id]}      # label names, first one present wins
series:
  temperature_c: {metric: gpu_temp_celsius}                # a renamed family
  power_w: {metric: gpu_power_milliwatts, scale: 0.001}    # ... in another unit
  inlet_c: {metric: ipmi_temperature_celsius, match: {name: Inlet_Temp}, node_label: instance}
unknown: [job_progress_age_s]   # evaluate as unknown (NaN), as the agent does where it has no source
```

Unknown keys are refused and every error names file, line and field (`config.load_model`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from coldaisle.backtest import sources as S
from coldaisle.config import Located, load_model

_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


def _listed(value: object) -> object:
    """A single label name may be written without brackets."""
    return [value] if isinstance(value, str) else value


Names = Annotated[list[Annotated[str, Field(pattern=_LABEL)]], BeforeValidator(_listed)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelNames(_Strict):
    """Which labels name the node, the GPU, its model and its job; each is a list, the first present wins."""

    node: Names = Field(["Hostname", "node"], description="the node's name (dcgm-exporter: Hostname)")
    gpu: Names = Field(["gpu"], description="the GPU's index on its node")
    uuid: Names = Field(["UUID", "uuid"], description="the GPU's UUID")
    model: Names = Field(["modelName"], description="the GPU's model, looked up in the GPU catalog")
    job: Names = Field(["hpc_job", "slurm_job"], description="a Slurm job id (dcgm-exporter's HPC job mapping)")
    pod: Names = Field(["pod"], description="a Kubernetes pod (dcgm-exporter's pod mapping)")
    namespace: Names = Field(["namespace"], description="the pod's namespace")


class SeriesMap(_Strict):
    """Where one policy name is on this site."""

    metric: str = Field(pattern=_METRIC, description="the metric name in this site's Prometheus")
    scale: float = Field(1.0, gt=0, description="multiply samples by this for the policy's unit (0.001: mW -> W)")
    match: dict[Annotated[str, Field(pattern=_LABEL)], str] = Field({}, description="extra label matchers")
    node_label: str | None = Field(None, pattern=_LABEL, description="the label naming the node in this series "
                                                                     "(another exporter's, e.g. a BMC's `instance`)")


class Mapping(_Strict):
    """A whole mapping file."""

    labels: LabelNames = LabelNames()
    series: dict[str, SeriesMap] = {}
    unknown: list[str] = Field([], description="names to evaluate as unknown (NaN) rather than refuse the rule")


@dataclasses.dataclass(frozen=True)
class SiteNames:
    """A mapping file applied: the label names, every name's Source, and the node label per metric."""

    labels: LabelNames
    sources: dict[str, S.Source]
    unknown: frozenset[str]
    node_labels: dict[str, tuple[str, ...]]  # metric -> its node label names (a mapped series may say its own)


def load_mapping(path: str | Path | None) -> SiteNames:
    """The built-in names (dcgm-exporter's and coldaisle's), with a mapping file's changes when given."""
    if path is None:
        return apply(Mapping(), None)
    mapping, lines = load_model(path, Mapping, with_lines=True)
    return apply(mapping, Located(str(path), lines))


def apply(mapping: Mapping, at: Located | None) -> SiteNames:
    """Check the names a mapping uses and merge its series into the built-in table."""
    table = dict(S.table())
    node_labels: dict[str, tuple[str, ...]] = {}
    for name, m in mapping.series.items():
        src = table.get(name)
        if src is None or src.level == "process":
            raise _error(at, ("series", name), name, src)
        kind = S.GAUGE if src.kind in (S.ABSENT, S.DERIVED) else src.kind
        cand = S.Candidate(m.metric, m.scale, tuple(sorted(m.match.items())))
        table[name] = dataclasses.replace(src, kind=kind, candidates=(cand,), note=f"mapped to {m.metric}")
        if m.node_label:
            node_labels[m.metric] = (m.node_label,)
    for i, name in enumerate(mapping.unknown):
        if name not in table or table[name].level == "process":
            raise _error(at, ("unknown", i), name, table.get(name))
    return SiteNames(mapping.labels, table, frozenset(mapping.unknown), node_labels)


def _error(at: Located | None, path: tuple[str | int, ...], name: str, src: S.Source | None) -> Exception:
    import difflib

    from coldaisle.errors import ConfigError

    if src is not None:
        msg, hint = f"{name} is per process: {S.table()[name].note}", None
    else:
        close = difflib.get_close_matches(name, list(S.table()), n=1)
        msg = f"{name!r} is not a name a policy can read"
        hint = f"did you mean {close[0]!r}?" if close else "see docs/policy.md for every name"
    if at is None:
        return ConfigError(msg, hint=hint)
    return at.error(path, msg, hint)
