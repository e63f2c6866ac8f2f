"""The house reads as the data flows: the environment library never reaches up into the
applications, its modules import each other without a circle and only through public
names, the applications install under think2seg.*, and `t2s` is assembled from
subcommands that the applications register."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

from t2s_env import cli

REPO = Path(__file__).resolve().parents[2]
APPLICATIONS = ("agents", "benchmarks", "scripts", "think2seg")
PROJECT = ("t2s_env", *APPLICATIONS)
#: Modules allowed to share private names, and why. The synthetic generator's stages pass
#: helpers to each other; renaming them edits its source, whose digest
#: (datasets.synthetic.source_fingerprint) keys every cached copy of the embedded data.
PRIVATE_NAMES_SHARED_WITHIN = {
    "t2s_env.datasets.synthetic": "renaming changes source_fingerprint() and regenerates every data cache",
}


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules(root: Path = REPO) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / "t2s_env").rglob("*.py"))}


def _project_modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the project under its installed name (agents/x.py is think2seg.agents.x)."""
    modules = _library_modules(root)
    for folder in ("agents", "benchmarks", "scripts"):
        modules.update({f"think2seg.{_module_name(p, root)}": p for p in sorted((root / folder).rglob("*.py"))})
    return modules


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative ones resolved from ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def library_imports(root: Path = REPO, modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Library module (or, given ``modules``, any of them) -> the modules among them it
    imports, at module level or inside a function (a lazy import that closes a circle is a
    circle too). ``from pkg import mod`` counts as importing ``pkg.mod``."""
    modules = _library_modules(root) if modules is None else modules
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(name, path.name == "__init__.py", node)
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    edges.add(sub if sub in modules else target)
        edges.discard(name)
        edges.intersection_update(modules)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def private_name_uses(paths: dict[str, Path], root: Path = REPO) -> list[str]:
    """``from M import _x`` and ``m._x`` (``m`` bound by an import of a project module)
    where M is another project module: one line per use."""
    uses = []
    for name, path in paths.items():
        if any(name == pkg or name.startswith(pkg + ".") for pkg in PRIVATE_NAMES_SHARED_WITHIN):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(name, path.name == "__init__.py", node)
                if source.split(".")[0] not in PROJECT:
                    continue
                for a in node.names:
                    bound[a.asname or a.name] = source
                    if _is_private(a.name) and source != name:
                        uses.append(f"{path.relative_to(root)}:{node.lineno}: from {source} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in PROJECT:
                        bound[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and _is_private(node.attr)):
                uses.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}")
    return uses


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_library_modules_import_no_circle():
    assert import_circles(library_imports()) == []


def test_project_modules_import_no_circle():
    """The applications too: a circle such as harness <-> sharding reads in no order."""
    graph = library_imports(modules=_project_modules())
    assert "think2seg.benchmarks.sharding" in graph["think2seg.benchmarks.cli"]  # installed names resolve
    assert import_circles(graph) == []


def test_import_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_library_modules_use_no_other_modules_private_names():
    assert private_name_uses(_library_modules()) == []


def test_project_modules_use_no_other_modules_private_names():
    assert private_name_uses(_project_modules()) == []


def test_private_name_uses_are_found(tmp_path):
    pkg = tmp_path / "t2s_env"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n\n\nclass Box:\n    _cache = {}\n")
    (pkg / "b.py").write_text("from .a import _helper\nfrom t2s_env.a import Box\n\nBox._cache.clear()\n")
    (pkg / "c.py").write_text("import t2s_env.a as a\nimport sys\n\na._helper()\nsys._getframe()\n")
    uses = private_name_uses(_library_modules(tmp_path), tmp_path)
    assert uses == ["t2s_env/b.py:1: from t2s_env.a import _helper", "t2s_env/b.py:4: Box._cache",
                    "t2s_env/c.py:4: a._helper"]


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
