"""The `vidrec` command as a user runs it: one JSON line per verb, errors that say what."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vidrec.ports import free_port

pytestmark = pytest.mark.integration


def vidrec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidrec.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def one_json_line(p: subprocess.CompletedProcess[str]) -> dict:
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    return dict(json.loads(lines[0]))


def test_simulate_then_build_then_check_skew(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    p = vidrec(
        "simulate", "--scale", "small", "--days", "3", "--seed", "2", "--out", str(sim), "--json"
    )
    assert p.returncode == 0, p.stderr
    s = one_json_line(p)
    assert s["counts"]["impressions"] > 1000 and (sim / "watches.parquet").exists()

    p = vidrec(
        "features", "build", "--data", str(sim), "--out", str(tmp_path / "t.parquet"), "--json"
    )
    assert p.returncode == 0, p.stderr
    b = one_json_line(p)
    assert b["rows"] == b["expected_rows"] > 0 and b["rejected_total"] == 0

    p = vidrec("features", "check-skew", "--data", str(sim), "--sample", "300", "--json")
    assert p.returncode == 0 and one_json_line(p)["passed"] is True

    p = vidrec(
        "features",
        "check-skew",
        "--data",
        str(sim),
        "--sample",
        "300",
        "--store-lag-seconds",
        "86400",
        "--json",
    )
    assert p.returncode == 1 and one_json_line(p)["passed"] is False

    p = vidrec(
        "features",
        "materialize",
        "--data",
        str(sim),
        "--store",
        f"sqlite:///{tmp_path}/online.db",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    m = one_json_line(p)
    assert m["rows"]["video"] > 0 and m["history_events"] > 0

    # traffic at an address nothing answers: every request counted as failed, exit 1
    url = f"http://127.0.0.1:{free_port()}"
    p = vidrec("traffic", "--url", url, "--data", str(sim), "--duration", "1", "--json")
    t = one_json_line(p)
    assert p.returncode == 1 and t["ok"] == 0 and sum(t["errors"].values()) == t["planned"] > 0
    assert "is `vidrec serve` running" in p.stderr


def test_errors_are_one_json_line_and_exit_2(tmp_path: Path) -> None:
    p = vidrec("simulate", "--scenario", "bogus", "--json")
    assert p.returncode == 2
    assert "scenario" in one_json_line(p)["message"]
    p = vidrec("bench", "drift", "--scenarios", "new-market,bogus", "--json")
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["details"]["key"] == "scenarios" and "'bogus'" in err["message"]

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[features]\nlast_m = 3\n")
    p = vidrec("features", "build", "--config", str(cfg), "--json")
    assert p.returncode == 2 and "features.last_m" in one_json_line(p)["message"]

    p = vidrec("features", "build", "--data", str(tmp_path / "nowhere"), "--json")
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["status"] == 400 and "users.parquet" in err["message"]

    # a simulated log without its tables: named like the training set's are (it was the path)
    (tmp_path / "sim" / "oracle").mkdir(parents=True)
    p = vidrec("traffic", "--data", str(tmp_path / "sim"), "--duration", "1", "--json")
    assert p.returncode == 2 and "no users.parquet (table 'users'" in one_json_line(p)["message"]

    # a file where the output directory goes: named, exit 2 (a FileExistsError traceback)
    (tmp_path / "afile").write_text("")
    p = vidrec("monitor", "rules", "--out", str(tmp_path / "afile"), "--json")
    assert p.returncode == 2 and one_json_line(p)["details"]["file"] == str(tmp_path / "afile")
    assert "Traceback" not in p.stderr

    # materialized into memory, the snapshot would be gone when the command exits
    p = vidrec("features", "materialize", "--data", str(tmp_path), "--json")
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["details"]["key"] == "store" and "in memory" in err["message"]

    p = vidrec("features", "list", "--json")
    assert p.returncode == 0 and "video_ctr_7d" in {f["name"] for f in one_json_line(p)["features"]}


def test_train_and_registry_verbs_answer_in_one_json_line(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[registry]\nroot = "{tmp_path / "reg"}"\n')
    p = vidrec("train", "--data", str(tmp_path / "nope"), "--json")
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["status"] == 400 and "nope" in err["message"]
    p = vidrec("registry", "list", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert one_json_line(p) == {"versions": []}
    p = vidrec("registry", "show", "champion", "--config", str(cfg), "--json")
    assert p.returncode == 2 and one_json_line(p)["status"] == 404
    # serving without an online store would serve every user as unknown: refused, named
    p = vidrec("serve", "--config", str(cfg), "--port", str(free_port()), "--json")
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["details"]["key"] == "store" and "features materialize" in err["message"], err
    store = f"sqlite:///{tmp_path / 'online.db'}"  # a typo'd path was created, empty
    p = vidrec("serve", "--config", str(cfg), "--store", store, "--port", str(free_port()),
               "--json")  # fmt: skip
    assert p.returncode == 2 and "does not exist" in one_json_line(p)["message"]
    (tmp_path / "online.db").write_bytes(b"")
    # a log directory it cannot write: it served, and logged nothing (500s once buffered)
    p = vidrec("serve", "--config", str(cfg), "--store", store, "--port", str(free_port()),
               "--log-dir", str(tmp_path / "online.db" / "log"), "--json")  # fmt: skip
    assert p.returncode == 2 and one_json_line(p)["details"]["key"] == "--log-dir"
    # serving an empty registry says what would fill it, before starting anything
    p = vidrec("serve", "--config", str(cfg), "--store", store, "--port", str(free_port()),
               "--json")  # fmt: skip
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["status"] == 404 and "vidrec train" in err["message"], err
    cfg.write_text("[gates]\nmetrc = 'x'\n")
    p = vidrec("registry", "list", "--config", str(cfg), "--json")
    assert p.returncode == 2 and "gates.metrc" in one_json_line(p)["message"]


def test_bench_train_shows_a_terminal_its_tables_not_the_whole_report(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    p = vidrec("bench", "train", "--no-pipeline", "--sizes", "20000", "--out", str(out))
    assert p.returncode == 0, p.stderr
    md = (out / "train.md").read_text().splitlines()
    assert md[2].startswith("| 20,000 |") and md[-1].startswith("Ranker scoring")
    shown = p.stdout.splitlines()
    assert shown[0] == "training benchmark" and shown[1 : 1 + len(md)] == md
    assert shown[-1] == f"table {out / 'train.md'}, plot {out / 'train.png'}"
    assert "machine" not in p.stdout  # the report itself stays in train.json


def test_usage_errors_name_the_option_in_one_json_line_and_never_a_traceback(
    tmp_path: Path,
) -> None:
    p = vidrec()  # no verb: the help, as click shows it
    assert p.returncode == 2 and "simulate" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    for args, key in [
        (("monitor", "run", "--runs", "0"), "--runs"),  # out of range
        (("simulate", "--seed", "x"), "--seed"),  # not a number
        (("simulate", "--seed", "-1"), "--seed"),  # numpy's generators take no negative seed
        (("traffic", "--seed", "-1"), "--seed"),
        (("serve", "--port", "99999"), "--port"),  # not a port
        (("registry", "list", "--bogus"), "--bogus"),  # no such option
        (("registry", "show"), "ref"),  # missing argument
        (("traffic", "--url", "localhost:8080"), "--url"),  # not an http(s) URL
        (("traffic", "--url", "http://[::1"), "--url"),  # not a URL: a traceback before
        (("traffic", "--url", "http://127.0.0.1:99999"), "--url"),  # 20 failed requests before
        (("bench", "features", "--scales", "demo,tiny"), "scales"),  # checked before any work
        (("bench", "serve", "--sizes", "1e5"), "--sizes"),  # a traceback before
        (("bench", "serve", "--rates", "25,-5"), "--rates"),
        (("bench", "serve", "--rates", "inf"), "--rates"),  # passes "> 0"
        (("traffic", "--rate", "inf"), "--rate"),  # passes click's range: a traceback before
        (("dashboards", "render", "--until", "nan"), "--until"),
        (("dashboards", "render", "--window", "0s"), "--window"),  # sent to every query before
        (("features", "check-skew", "--snapshots", "-1"), "--snapshots"),  # a traceback before
        (("features", "check-skew", "--sample", "0"), "--sample"),  # compared 3 rows before
        (("bench", "train", "--sizes", "100000,"), "--sizes"),
    ]:
        p = vidrec(*args, "--json")
        assert p.returncode == 2, args
        err = one_json_line(p)
        assert (err["error"], err["status"], err["details"]["key"]) == ("config_error", 400, key)
        assert key in err["message"] and key in p.stderr and "Traceback" not in p.stderr

    # an output path that cannot be written fails before the work, naming the file
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "t.parquet"
    p = vidrec(
        "features", "build", "--data", str(tmp_path / "nowhere"), "--out", str(out), "--json"
    )
    assert p.returncode == 2
    err = one_json_line(p)
    assert err["status"] == 400 and err["details"]["file"] == str(out), err
    assert "Traceback" not in p.stderr
    # a directory for the file: refused before the join (it was written beside it, then failed)
    p = vidrec("features", "build", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path),
               "--json")  # fmt: skip
    err = one_json_line(p)
    assert (p.returncode, err["details"]["file"]) == (2, str(tmp_path)), err
    assert "a directory" in err["message"]
    p = vidrec("monitor", "rules", "--out", str(tmp_path / "afile" / "rules"), "--json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = one_json_line(p)
    assert err["status"] == 400 and err["details"]["file"] == str(tmp_path / "afile" / "rules")

    # a port something already listens on: 409 before any work starts
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        p = vidrec("monitor", "run", "--runs", "1", "--port", port, "--json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = one_json_line(p)
    assert (err["status"], err["details"]["key"]) == (409, "--port") and port in err["message"]

    # a monitor that could assess nothing says so: it reported success before
    cfg = tmp_path / "unreachable.toml"
    cfg.write_text('[monitoring]\nprometheus_url = "http://127.0.0.1:1"\n'
                   f'[registry]\nroot = "{tmp_path / "registry"}"\n')  # fmt: skip
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    p = vidrec("monitor", "run", "--runs", "1", "--port", port, "--config", str(cfg),
               "--out", str(tmp_path / "mon"), "--json")  # fmt: skip
    done = one_json_line(p)
    assert p.returncode == 1 and done["runs"] == 1 and done["results"] == {"error": 1}, p.stdout
    assert "127.0.0.1:1" in done["last_error"]["message"] and "every run failed" in p.stderr

    # --kube with no cluster configured: 503 saying how to point at one
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")
    p = vidrec("rollout", "status", "--kube", "default/x", "--json", env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = one_json_line(p)
    assert err["status"] == 503 and "$KUBECONFIG" in err["message"], err
