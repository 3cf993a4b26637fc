"""docs/upgrade.md: the CRD upgrade path names files that exist and commands that work offline.

Helm never upgrades `crds/`, so the upgrade page is the only thing between a user and silently
pruned fields; what can be checked without a cluster is checked: every `-f` path exists and holds the
three CRDs, `helm show crds` on the chart prints exactly those CRDs, and the `helm upgrade` line
renders with the real helm.
"""

from __future__ import annotations

import subprocess

import yaml
from chartkit import CHART, ROOT, helm_binary
from test_install_docs import as_template, commands, option

UPGRADE = ROOT / "docs" / "upgrade.md"
CRD_NAMES = [
    "inferenceservices.modelops.dev",
    "modelversions.modelops.dev",
    "trainingjobs.modelops.dev",
    "tuningjobs.modelops.dev",
]


def crd_names(text: str) -> list[str]:
    return sorted(d["metadata"]["name"] for d in yaml.safe_load_all(text) if d)


def test_every_file_the_upgrade_commands_apply_exists_and_holds_the_crds() -> None:
    applies = [c for c in commands(UPGRADE) if "kubectl" in c and "apply" in c]
    assert applies
    for command in applies:
        assert "--server-side" in command and "--force-conflicts" in command, command
        path = option(command, "-f")
        if path == "-":
            continue
        directory = ROOT / path
        assert directory.is_dir(), f"docs/upgrade.md applies {path}, which does not exist"
        text = "\n---\n".join(p.read_text() for p in sorted(directory.glob("*.yaml")))
        assert crd_names(text) == CRD_NAMES


def test_helm_show_crds_prints_the_crds_of_the_chart() -> None:
    piped = [c for c in commands(UPGRADE) if c[:3] == ["helm", "show", "crds"]]
    assert piped, "docs/upgrade.md should show the packaged-chart path (helm show crds)"
    for command in piped:
        chart_arg = command[3]
        assert (ROOT / chart_arg).resolve() == CHART
        shown = subprocess.run(
            [helm_binary(), "show", "crds", chart_arg], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        assert crd_names(shown.stdout) == CRD_NAMES


def test_the_crds_are_upgraded_before_the_release_and_the_upgrade_renders() -> None:
    lines = commands(UPGRADE)
    first_crd = next(i for i, c in enumerate(lines) if "crds" in " ".join(c))
    upgrade = next(i for i, c in enumerate(lines) if c[:2] == ["helm", "upgrade"])
    assert first_crd < upgrade
    command = [a for a in lines[upgrade] if a != "--reuse-values"]
    result = subprocess.run(as_template(command), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    waits = [c for c in lines if c[:2] == ["kubectl", "wait"]]
    assert sorted(a.removeprefix("crd/") for a in waits[0] if a.startswith("crd/")) == CRD_NAMES
