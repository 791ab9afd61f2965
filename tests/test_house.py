"""The house rules that keep the code honest: the tests test this checkout (not an installed
copy), an installed wheel still works on its own, and the compiler never depends on the
verification and presentation wings built on top of it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import model_zoo
import mnv2gen
from conftest import REPO

# The compiler proper: it must run with nothing of the wings installed or importable.
COMPILER_MODULES = ["frontend", "passes", "plan", "codegen", "ir.py", "quant.py", "compiler.py",
                    "targets.py", "errors.py"]
WINGS = ("verification", "presentation", "firmware", "host_sim", "cli")


def test_the_tests_import_this_checkout():
    assert Path(mnv2gen.__file__).resolve().parent == REPO / "mnv2gen"


def test_subprocesses_import_this_checkout(tmp_path):
    found = subprocess.run([sys.executable, "-c", "import mnv2gen; print(mnv2gen.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found).resolve().parent == REPO / "mnv2gen"


def _imported_modules(path: Path) -> set[str]:
    """The mnv2gen modules a source file imports, as dotted names relative to mnv2gen."""
    package = path.relative_to(REPO / "mnv2gen").parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - (node.level - 1)])
                names.add(".".join(base + ([node.module] if node.module else [])))
                names.update(".".join(base + [alias.name]) for alias in node.names if not node.module)
            elif node.module and node.module.startswith("mnv2gen."):
                names.add(node.module.removeprefix("mnv2gen."))
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("mnv2gen.") for a in node.names if a.name.startswith("mnv2gen."))
    return names


def test_the_compiler_never_imports_the_wings():
    sources = [p for name in COMPILER_MODULES for p in ([REPO / "mnv2gen" / name] if name.endswith(".py")
                                                       else sorted((REPO / "mnv2gen" / name).rglob("*.py")))]
    assert len(sources) > 15
    offending = {f"{p.relative_to(REPO)} imports {m}" for p in sources for m in _imported_modules(p)
                 if m.split(".")[0] in WINGS}
    assert not offending, sorted(offending)


def test_an_installed_wheel_works_on_its_own(tmp_path):
    """Build the wheel, install it alone into a fresh environment and compile from an
    unrelated folder: the templates and C assets must ship inside the package."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(REPO)], check=True, capture_output=True)
    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=False)  # numpy, jinja2, tflite from here
    python = environment / "bin" / "python"
    wheel = next(wheels.glob("mnv2gen-*.whl"))
    # --ignore-installed: the copy in the system's site-packages must not satisfy it.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True)
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import mnv2gen; print(mnv2gen.__file__)"], cwd=elsewhere,
                           env=clean_env, capture_output=True, text=True, check=True).stdout
    assert str(environment) in where, where
    model = model_zoo.get_model("mnv2_a035_96_c10")
    subprocess.run([str(environment / "bin" / "mnv2gen"), "compile", str(model), "--out", "c", "--target",
                    "cortex-m4", "--quiet"], cwd=elsewhere, env=clean_env, check=True)
    assert sorted(p.name for p in (elsewhere / "c").glob("*.[ch]")) == [
        "mnv2_kernels.c", "mnv2_kernels.h", "mnv2_model.c", "mnv2_model.h", "mnv2_weights.c", "mnv2_weights.h"]
    firmware_assets = subprocess.run(
        [str(python), "-c", "import importlib.resources as r; f = r.files('mnv2gen.firmware'); "
         "print(f.joinpath('harness.c').is_file(), f.joinpath('ld').is_dir())"],
        cwd=elsewhere, env=clean_env, capture_output=True, text=True, check=True).stdout.split()
    assert firmware_assets == ["True", "True"]
