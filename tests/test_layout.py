"""The test tree itself: pytest imports test modules by basename (no packages), so two `test_cli.py` in
different folders make the whole run fail to collect. Name each after its folder instead."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).parent


def test_every_test_module_basename_is_unique() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if "jobs" not in path.parts and not (path.parent / "__init__.py").exists():
            seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename these so each basename is unique (e.g. test_<folder>_...): {clashes}"
