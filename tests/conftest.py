"""Shared helpers: compile a model, build it on the host, prove it equal to TFLite.

The tests test the working tree: the checkout goes first on `sys.path`, and on PYTHONPATH for
every subprocess (`python -m mnv2gen.cli`, the oracle's workers), whatever copy of mnv2gen is
installed. tests/test_house.py checks that, and that an installed wheel works on its own.

Two tiers. By default the fast one (a few minutes): every kernel, op and command, the
flagship and a few fixtures. `pytest --full`, or any run with CI=true, adds the full matrix
(every fixture under QEMU on every kernel variant, sanitizers, the long fuzz runs): tests
marked `full`. Fixture models are built (or found in the cache) once, before any test runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(Path(__file__).parent))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from mnv2gen.codegen.render import Options  # noqa: E402
from mnv2gen.compiler import compile_model, write_files  # noqa: E402
from mnv2gen.verification.host import divergence_note, verify  # noqa: E402

FULL_ENV = "MNV2GEN_FULL"


def require_tools(*names: str) -> None:
    """Fail, never skip, when a tool a test needs is missing: these tests are the only ones
    that execute the code they check (tools/setup.sh installs every one of them)."""
    import shutil

    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run tools/setup.sh", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="run the full matrix too (tests marked `full`); CI=true implies it")


def full_matrix(config) -> bool:
    return bool(config.getoption("--full") or os.environ.get("CI") == "true" or os.environ.get(FULL_ENV))


def pytest_configure(config):
    config.addinivalue_line("markers", "full: part of the full matrix only (pytest --full, or CI=true)")


def pytest_report_header(config):
    return ["tier: full matrix" if full_matrix(config) else
            "tier: fast (pytest --full, or CI=true, adds the full matrix)"]


def pytest_collection_modifyitems(config, items):
    if full_matrix(config):
        return
    deselected = [item for item in items if item.get_closest_marker("full")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("full")]


def pytest_sessionstart(session):
    """Build every fixture model once, up front, in the controlling process (with xdist,
    the workers find them in the cache), so no single test is billed for them."""
    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return
    import model_zoo
    import onnx_zoo

    jobs = max(1, min(2, os.cpu_count() or 1))
    built = model_zoo.build_all(jobs) + onnx_zoo.build_all(jobs)
    if built:
        print(f"\nbuilt {built} fixture models into {model_zoo.cache_dir()}", flush=True)


def assert_bit_exact(model_path, out_dir, count: int = 50, seed: int = 0, sanitize: bool = False):
    """Compile, build and compare `count` random inputs plus the all-min and all-max ones
    with TFLite's reference kernels, and with TFLite Micro where it runs.

    Where the two references round differently (per-channel FULLY_CONNECTED), the model is
    compiled a second time with --reference tflm, and that build must equal TFLite Micro."""
    result = compile_model(model_path)
    write_files(result.files, out_dir)
    report = verify(model_path, result, out_dir, count=count, seed=seed, sanitize=sanitize)
    assert report.inputs == count + 2
    # Inputs on which TFLite's reference itself dies (an assertion in its SOFTMAX) have no
    # reference output; they may only be a small minority.
    assert report.tflite_aborted <= report.inputs // 4
    assert report.matched_tflite + report.tflite_aborted == report.inputs, report.first_mismatch
    if report.matched_tflm is not None and divergence_note(result.graph, "tflite"):
        tflm_build = compile_model(model_path, Options(reference="tflm"))
        write_files(tflm_build.files, out_dir)
        report = verify(model_path, tflm_build, out_dir, count=count, seed=seed, reference="tflm")
    if report.matched_tflm is not None:
        assert report.matched_tflm + report.tflm_aborted == report.inputs, "TFLite Micro disagrees"
    return result, report


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"
