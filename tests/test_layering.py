"""The house reads as the data flows: the environment library never reaches up into the
applications, the applications install under think2seg.*, and `t2s` is assembled from
subcommands that the applications register."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

from t2s_env import cli

REPO = Path(__file__).resolve().parents[1]
APPLICATIONS = ("agents", "benchmarks", "scripts", "think2seg")


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_library_source_imports_no_application():
    offenders = []
    for path in sorted((REPO / "t2s_env").rglob("*.py")):
        for name in _imported_names(path):
            if name.split(".")[0] in APPLICATIONS:
                offenders.append(f"{path.relative_to(REPO)}: {name}")
        # An upward dependency hidden in a string (importlib) is one too.
        text = path.read_text()
        apps = [f"{ns}{app}." for ns in ("", "think2seg.") for app in ("agents", "benchmarks", "scripts")]
        for app in apps:
            if f'"{app}' in text or f"'{app}" in text:
                offenders.append(f"{path.relative_to(REPO)}: string {app!r}")
    assert not offenders, offenders


def test_library_and_its_cli_load_no_application_module():
    code = (
        "import sys, t2s_env, t2s_env.cli\n"
        "t2s_env.cli.registered_commands()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('think2seg', 'agents', 'benchmarks', 'scripts')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_package_folder_is_installed():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    mapping = dict(line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines())
    folder_of = {v: k for k, v in mapping.items()}
    found = set()
    for init in REPO.glob("*/**/__init__.py"):
        parts = init.parent.relative_to(REPO).parts
        if parts[0] in ("tests", ".venv", "build"):
            continue
        top = folder_of.get(parts[0], parts[0])
        found.add(".".join((top, *parts[1:])))
    assert found == listed


def test_applications_register_their_subcommands():
    names = {" ".join(path) for path in cli.registered_commands()}
    assert {"bench", "leaderboard", "train grpo"} <= names


def test_help_lists_registered_commands(capsys):
    try:
        cli.main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for name in ("data", "bench", "leaderboard", "train"):
        assert name in out
    assert "Run agents on a dataset" in out


def test_registered_command_gets_its_own_arguments(monkeypatch):
    seen = {}

    class FakeEntryPoint:
        name, value = "train.fake", "x:y"

        def load(self):
            return lambda argv: seen.setdefault("argv", argv) and 7

    monkeypatch.setattr(cli, "registered_commands", lambda: {("train", "fake"): FakeEntryPoint()})
    assert cli.main(["train", "fake", "--config", "a.yaml", "k=v"]) == 7
    assert seen["argv"] == ["--config", "a.yaml", "k=v"]
