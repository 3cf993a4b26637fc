"""Helpers of the alert-rule tests: the real promtool, and the annotations Prometheus will render.

`promtool test rules` compares annotations exactly, so each expected alert carries the annotations
rendered from the rule's own templates with the labels and value the test expects; a template that
Prometheus renders differently (a typo in a label name, a wrong function) fails the test.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelops"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed: scripts/bootstrap.sh installs Debian's prometheus package")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    local = ROOT / ".tools" / "bin" / "helm"
    helm = str(local) if local.is_file() else shutil.which("helm")
    if helm is None:
        pytest.skip("no helm binary: run `make bootstrap` to install it into .tools/bin")
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def go_float(v: float) -> str:
    """Go's %v of a float64, as `{{ $value }}` prints it (for the values these tests use)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)).removesuffix(".0") if abs(v) < 1e21 else f"{v:g}"


def humanize_duration(v: float) -> str:
    """Prometheus' humanizeDuration."""
    if abs(v) < 1:
        raise NotImplementedError("sub-second durations are not used in these tests")
    sign = "-" if v < 0 else ""
    s = int(abs(v))
    days, hours, minutes, seconds = s // 86400, s // 3600 % 24, s // 60 % 60, s % 60
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return f"{sign}{abs(v):.4g}s"


_TEMPLATE = re.compile(
    r"\{\{\s*(\$labels\.(\w+)|\$value(\s*\|\s*(humanizeDuration|printf \"([^\"]+)\"))?)\s*\}\}"
)


def render(text: str, labels: Mapping[str, str], value: float) -> str:
    """The few Prometheus template forms our rules use: $labels.x, $value, | humanizeDuration, | printf."""

    def one(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        if match.group(4) == "humanizeDuration":
            return humanize_duration(value)
        if match.group(5):
            return match.group(5) % value
        return go_float(value)

    rendered = _TEMPLATE.sub(one, text)
    assert "{{" not in rendered, f"a template form the tests do not know: {text}"
    return rendered


def expected_alert(rule: Mapping[str, Any], series_labels: Mapping[str, str], value: float) -> dict[str, Any]:
    """What promtool should report for `rule` firing on a series with these labels and this value."""
    labels = {**series_labels, **rule.get("labels", {})}
    return {
        "exp_labels": labels,
        "exp_annotations": {k: render(v, labels, value) for k, v in rule["annotations"].items()},
    }


def find_rule(groups: list[dict[str, Any]], alert: str) -> dict[str, Any]:
    found = [r for g in groups for r in g["rules"] if r.get("alert") == alert]
    assert len(found) == 1, f"expected one rule {alert}, found {len(found)}"
    return found[0]


def unit_test(
    tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]], name: str = "rules"
) -> subprocess.CompletedProcess[str]:
    """Write the rule file and a promtool test file next to it, run `promtool test rules`."""
    rules = tmp_path / f"{name}.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    spec = tmp_path / f"{name}_test.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}, sort_keys=False
        )
    )
    return run_promtool("test", "rules", str(spec))
