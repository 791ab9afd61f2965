"""Fuzz the frontend: truncated, bit-flipped, overwritten and spliced real models.

Every mutant must compile (and then give C that builds warning-free) or be refused with
exit code 2 and a one-line message: never another exception, a hang or a crash. Cases run
in-process through `mnv2gen.cli.main` for speed; a few go through a real subprocess to
check that nothing reaches stderr as a traceback. bench/fuzz_frontend.py runs 10,000.
"""

from __future__ import annotations

import random
import subprocess
import sys
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import model_zoo
from conftest import require_tools
from frontend_fuzz import Seed, mutate, run_case
from mnv2gen.targets import C_WARNINGS, cpu_flags, gcc_for

SMALL = "mnv2_a035_96_c10"
STRICT = list(C_WARNINGS)
FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@lru_cache(maxsize=None)
def single_op_seeds() -> tuple[Seed, ...]:
    return tuple(Seed.from_path(kind, model_zoo.single_op_model(kind, 0)) for kind in model_zoo.SINGLE_OP_KINDS)


@lru_cache(maxsize=None)
def fast_path_seeds() -> tuple[Seed, ...]:
    return tuple(Seed.from_path(name, model_zoo.fast_path_model(name)) for name in model_zoo.FAST_PATH_OPS)


@lru_cache(maxsize=None)
def network_seed() -> Seed:
    return Seed.from_path(SMALL, model_zoo.get_model(SMALL))


def check_case(data: bytes, tmp_path, build_c: bool, target: str = "host") -> None:
    path = tmp_path / "mutant.tflite"
    path.write_bytes(data)
    outcome = run_case(path, tmp_path / "out", target=target)
    assert outcome in ("compiled", "refused"), outcome
    if outcome == "compiled" and build_c:
        compiler = gcc_for(target)
        require_tools(compiler)
        out = tmp_path / "out"
        for source in sorted(out.glob("*.c")):
            subprocess.run([compiler, *cpu_flags(target), *STRICT, "-fsyntax-only", "-I", str(out), str(source)],
                           check=True)


@settings(max_examples=300, **FUZZ_SETTINGS)
@given(which=st.integers(0, len(model_zoo.SINGLE_OP_KINDS) - 1), count=st.integers(1, 3),
       rng=st.randoms(use_true_random=False))
def test_single_op_mutants_compile_or_are_refused(which, count, rng, tmp_path):
    seeds = single_op_seeds()
    check_case(mutate(seeds[which], rng.choice(seeds), rng, count), tmp_path, build_c=True)


# The SIMD kernels' lowering (blocks, tables, regrouped weights) on the same mutants, and on
# the fast-path fixtures'.
@settings(max_examples=150, **FUZZ_SETTINGS)
@given(which=st.integers(0, len(model_zoo.SINGLE_OP_KINDS) + len(model_zoo.FAST_PATH_OPS) - 1),
       count=st.integers(1, 3), target=st.sampled_from(["cortex-m4", "cortex-m55"]),
       rng=st.randoms(use_true_random=False))
def test_mutants_for_the_simd_kernels_compile_or_are_refused(which, count, target, rng, tmp_path):
    seeds = single_op_seeds() + fast_path_seeds()
    check_case(mutate(seeds[which], rng.choice(seeds), rng, count), tmp_path, build_c=True, target=target)


@settings(max_examples=25, **FUZZ_SETTINGS)
@given(rng=st.randoms(use_true_random=False))
def test_network_mutants_compile_or_are_refused(rng, tmp_path):
    seed = network_seed()
    check_case(mutate(seed, rng.choice(single_op_seeds()), rng, 1), tmp_path, build_c=False)


@pytest.mark.parametrize("case", range(4))
def test_mutants_in_a_subprocess_print_no_traceback(case, tmp_path):
    rng = random.Random(case)
    seeds = single_op_seeds()
    path = tmp_path / "mutant.tflite"
    path.write_bytes(mutate(seeds[case], seeds[-1 - case], rng, 2))
    result = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(path), "--out",
                             str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 0 or result.stderr.count("\n") == 1
