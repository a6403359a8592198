"""Packaging: the Dockerfile (checked, and its build stage's RUN steps run in a temp directory: no
container runtime is needed), compose.yaml, the systemd units and the generated man page."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from cli_help import ENV, help_text, options_in, unknown_options

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
NO_CACHES = shutil.ignore_patterns("__pycache__", "*.pyc")


# -- Dockerfile ------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in dockerfile():
        if word == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest, re.I)
            assert m, f"every stage is named: FROM {rest}"
            current = found[m.group(2)] = [(word, m.group(1))]
        elif current is not None:
            current.append((word, rest))
    return found


def test_dockerfile_is_multi_stage_non_root_with_the_entry_points() -> None:
    all_stages = stages()
    assert list(all_stages) == ["build", "runtime"]
    args = dict(rest.split("=", 1) for word, rest in dockerfile() if word == "ARG")
    image = args["PYTHON_IMAGE"]
    assert ":" in image and not image.endswith(":latest")  # a pinned base
    runtime = dict(all_stages["runtime"][1:])  # last instruction of each kind
    user = runtime["USER"].split(":")[0]
    assert user not in ("root", "0", "")
    assert json.loads(runtime["ENTRYPOINT"]) == ["bitswarm"]
    cmd = json.loads(runtime["CMD"])
    assert cmd[0] == "serve" and unknown_options(cmd) == []
    assert "COPY" in runtime and runtime["COPY"].startswith("--from=build /opt/bitswarm ")
    ports = {"6881/tcp", "6881/udp", "6969/tcp", "6969/udp", "42070/tcp", "9091/tcp"}
    assert ports <= set(runtime["EXPOSE"].split())
    assert all(word != "ADD" for word, _ in dockerfile())
    # the daemon is the other entry point: its documented command line is valid
    daemon = re.search(r"^#\s+daemon (.*)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert daemon and unknown_options(["daemon", *daemon.group(1).split()]) == []


def test_dockerfile_copies_what_exists_and_dockerignore_keeps_it() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv"} <= ignored
    for word, rest in stages()["build"]:
        if word == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), src
                assert src not in ignored


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dockerfile_build_steps_run(tmp_path: Path) -> None:
    """The build stage's COPY and RUN steps, in a temp directory: ``/opt/bitswarm`` becomes a temp
    path and ``python`` this interpreter's base. Dependencies are not downloaded (``PIP_NO_DEPS``;
    they come from the test venv when the result runs), bitswarm itself is built and installed, and
    the installed ``bitswarm`` runs both entry points."""
    workdir = tmp_path / "src"
    opt = tmp_path / "opt"
    env = {**ENV, "PIP_NO_DEPS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    ran = 0
    for word, rest in stages()["build"]:
        if word == "WORKDIR":
            assert rest == "/src"
            workdir.mkdir()
        elif word == "COPY":
            *sources, dest = rest.split()  # Docker's rules: a directory's contents go into dest
            target = workdir / dest
            for src in sources:
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, dirs_exist_ok=True, ignore=NO_CACHES)
                elif dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / src, target / src)
                else:
                    shutil.copy(ROOT / src, target)
        elif word == "RUN":
            command = rest.replace("/opt/bitswarm", str(opt / "bitswarm"))
            command = re.sub(r"(^|&& )python ", rf"\g<1>{shlex.quote(sys._base_executable)} ", command)
            proc = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=500)  # fmt: skip
            assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
            ran += 1
    assert ran >= 2
    bitswarm = opt / "bitswarm" / "bin" / "bitswarm"
    deps = sysconfig.get_paths()["purelib"]  # the test venv's site-packages: the dependencies only
    run_env = {**env, "PYTHONPATH": deps}
    probe = [str(opt / "bitswarm" / "bin" / "python"), "-c", "import bitswarm; print(bitswarm.__file__)"]
    found = subprocess.run(probe, env=run_env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    where = found.stdout
    assert where.startswith(str(opt)), where  # the installed copy, not the sources
    version = subprocess.run([str(bitswarm), "--version"], env=run_env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("bitswarm "), version
    for entry in ("serve", "daemon"):
        proc = subprocess.run([str(bitswarm), entry, "--help"], env=run_env, capture_output=True, text=True)
        assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


# -- compose.yaml ----------------------------------------------------------------------------------


def test_compose_runs_tracker_and_index_on_redis_and_postgres() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"tracker", "index", "redis", "postgres"}
    tracker, index = services["tracker"]["command"], services["index"]["command"]
    assert tracker[0] == "tracker" and index[0] == "index"
    assert tracker[tracker.index("--redis") + 1].startswith("redis://redis:")
    dsn = index[index.index("--db") + 1]
    assert dsn.startswith("postgresql://") and "@postgres:" in dsn
    assert "redis" in services["tracker"]["depends_on"] and "postgres" in services["index"]["depends_on"]
    for name in ("tracker", "index"):
        assert services[name]["build"] == "."  # this repository's Dockerfile
        assert unknown_options(services[name]["command"]) == []
        assert options_in(services[name]["command"]) >= 2
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")


# -- systemd ---------------------------------------------------------------------------------------


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize(
    ("name", "command"), [("bitswarm-daemon.service", "daemon"), ("bitswarm-serve.service", "serve")]
)
def test_systemd_units_are_hardened_and_valid(name: str, command: str, tmp_path: Path) -> None:
    sections = unit(name)
    service = sections["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert service["StateDirectory"]
    exec_start = shlex.split(service["ExecStart"][0])
    assert exec_start[0].endswith("/bitswarm") and exec_start[1] == command
    assert unknown_options(exec_start[1:]) == [] and options_in(exec_start) >= 2
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # systemd's own parser: no unknown key, no bad value, the command exists
        man = tmp_path / "man" / "man1"
        man.mkdir(parents=True)
        shutil.copy(ROOT / "man" / "bitswarm.1", man / "bitswarm.1")
        real = shutil.which("bitswarm") or str(Path(sys.executable).with_name("bitswarm"))
        text = (UNITS / name).read_text().replace(exec_start[0], real)
        (tmp_path / name).write_text(text)
        proc = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True, text=True,
                              env={**os.environ, "MANPATH": str(tmp_path / "man")}, timeout=60)  # fmt: skip
        assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", proc


# -- man page --------------------------------------------------------------------------------------


def test_man_page_is_generated_and_in_sync() -> None:
    script = ROOT / "packaging" / "gen_manpage.py"
    proc = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    page = (ROOT / "man" / "bitswarm.1").read_text()
    assert page.startswith(".TH BITSWARM 1 ")
    for command in ("create", "download", "seed", "share", "stream", "serve", "daemon", "tracker", "index"):
        assert f".SS bitswarm {command}\n" in page
    for option in ("\\-\\-download\\-limit", "\\-\\-log\\-file", "\\-\\-version"):
        assert option in page
    assert ".SH EXIT STATUS" in page
    groff = shutil.which("groff")
    if groff is not None:  # it renders, without warnings
        out = subprocess.run([groff, "-man", "-Tutf8", "-ww", str(ROOT / "man" / "bitswarm.1")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        shown = re.sub(r".\x08", "", out.stdout)  # no overstrike bold
        assert out.returncode == 0 and out.stderr == "" and "bitswarm download" in shown, out.stderr
    assert help_text(("download",))  # the CLI the page was made from still answers
