"""The kind quickstart's files (manifests/, tools/kind/) as the tests read them: the pinned
versions, the example ModelRollouts and their policies, and tools/kind/lib.sh's functions
called from bash as the scripts call them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from vidrec.config import RolloutPolicy, parse

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
KIND = ROOT / "tools" / "kind"
LIB = KIND / "lib.sh"
ROLLOUTS = sorted((MANIFESTS / "rollouts").glob("*.yaml"))


def versions() -> dict[str, str]:
    """manifests/versions.env (KEY=VALUE lines, # comments)."""
    pins = {}
    for line in (MANIFESTS / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_]+", key) and value.strip() == value, line
            pins[key] = value
    return pins


def lib(call: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    """`call` in bash after sourcing tools/kind/lib.sh, as the scripts do."""
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "$1"; {call}', "lib", str(LIB)],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def example(path: Path) -> tuple[dict[str, Any], RolloutPolicy]:
    """An example ModelRollout and its policy, parsed with the policy model."""
    doc = yaml.safe_load(path.read_text())
    return doc, parse(RolloutPolicy, doc["spec"]["policy"], str(path))


FAKE_TOOL = """#!{python}
# A stand-in for {{docker, kind, helm, kubectl, vidrec, sleep}}: logs its call, answers by
# the first rule whose tool and pattern match (a list of answers: one per call, then the
# last again), and succeeds silently when no rule matches.
import json, os, re, sys

tool, args, home = os.path.basename(sys.argv[0]), " ".join(sys.argv[1:]), os.environ["FAKE_DIR"]
with open(os.path.join(home, "calls.log"), "a") as log:
    log.write(f"{{tool}} {{args}}\\n")
state_file = os.path.join(home, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {{}}
for i, rule in enumerate(json.load(open(os.path.join(home, "rules.json")))):
    if rule["tool"] == tool and re.search(rule["match"], args):
        if rule.get("stdin") == "echo":
            sys.stdout.write(sys.stdin.read())
        elif rule.get("stdin"):
            with open(os.path.join(home, rule["stdin"]), "a") as keep:
                keep.write(sys.stdin.read())
        out = rule.get("stdout", "")
        if isinstance(out, list):
            n = state.get(str(i), 0)
            state[str(i)] = n + 1
            json.dump(state, open(state_file, "w"))
            out = out[min(n, len(out) - 1)]
        sys.stdout.write(out)
        sys.exit(rule.get("exit", 0))
"""


class FakeTools:
    """A PATH directory of fake tools for running tools/kind/*.sh without a cluster: every
    call is logged in order (`calls`), answers come from rules (tool, regex, stdout...)."""

    def __init__(self, home: Path, rules: list[dict[str, Any]]) -> None:
        import sys

        self.home, self.bin = home, home / "bin"
        self.bin.mkdir(parents=True)
        (home / "rules.json").write_text(json.dumps(rules))
        script = self.bin / "fake-tool"
        script.write_text(FAKE_TOOL.format(python=sys.executable))
        script.chmod(0o755)
        for tool in ("docker", "kind", "helm", "kubectl", "vidrec", "sleep"):
            (self.bin / tool).symlink_to(script)
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text("")

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        import sys

        return subprocess.run(
            ["bash", str(KIND / script)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home),
                 "FAKE_DIR": str(self.home), "VIDREC_KUBECONFIG": str(self.kubeconfig),
                 "VIDREC_CLI": str(self.bin / "vidrec"), "VIDREC_PYTHON": sys.executable,
                 **env},
        )  # fmt: skip

    @property
    def calls(self) -> list[str]:
        log = self.home / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def index(self, pattern: str) -> int:
        """Where the first call matching `pattern` is (fails when there is none)."""
        hits = [i for i, c in enumerate(self.calls) if re.search(pattern, c)]
        assert hits, f"no call matches {pattern!r}:\n" + "\n".join(self.calls)
        return hits[0]
