"""Bounded fuzzing of `awqfmt check` in CI (a few seconds): hypothesis mutates the bytes, the header JSON, the
configs and the index of real checkpoints. check must terminate, return 0 or 1, never raise (report and JSON
included), and report an error on every file the reference safetensors library refuses.
The long run is benchmarks/fuzz/run_fuzz.py; its results are in benchmarks/fuzz/RESULTS.md."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REAL_CHECKPOINTS
from fuzzlib import HypothesisChooser, RandomChooser, fuzz_one, make_seeds, mutate_bytes, mutate_header, run_check

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return make_seeds(REAL_CHECKPOINTS, tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "ckpt"


def test_seeds_are_clean_real_checkpoints(seeds):
    for seed in seeds:
        status, errors, _ = run_check(seed, deep=True)
        expected = {"zeros.v1-packer-corruption"} if seed.name == "gptq_b2_g32_asym" else set()
        assert errors == expected, (seed.name, errors)


@FUZZ
@given(data=st.data())
def test_fuzz_any_mutation(seeds, work, data):
    fuzz_one(seeds, work, HypothesisChooser(data))


@FUZZ
@given(data=st.data())
def test_fuzz_header_json(seeds, work, data):
    ch = HypothesisChooser(data)
    seed = ch.choice(seeds)
    import shutil
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(seed, work)
    target = sorted(work.glob("*.safetensors"))[0]
    target.write_bytes(mutate_header(target.read_bytes(), ch))
    status, _, _ = run_check(work, deep=False)
    assert status in (0, 1)


def test_random_mutations_report_every_refused_file(seeds, work):
    """A fixed-seed batch without hypothesis' shrinking overhead: more inputs per second, same contract."""
    rng = random.Random(20240607)
    outcomes = [fuzz_one(seeds, work, RandomChooser(rng)) for _ in range(60)]
    refused = [o for o in outcomes if o.library_rejects]
    assert len(refused) >= 10  # the mutators do produce broken files, and each one was reported (fuzz_one asserts it)
    assert {o.kind for o in outcomes} >= {"bytes", "header", "config"}


def test_truncation_at_every_header_byte(seeds, work):
    """Exhaustive over one header: every cut point inside the length field and the header JSON is reported."""
    import shutil

    from fuzzlib import Outcome, check_contract, library_rejects
    seed = next(s for s in seeds if s.name == "gptq_b3_g128_asym")
    blob = (seed / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for cut in list(range(0, header_end + 2, 7)) + [len(blob) - 1]:
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(seed, work)
        (work / "model.safetensors").write_bytes(blob[:cut])
        status, errors, findings = run_check(work, deep=False)
        check_contract(Outcome("bytes", "model.safetensors", status, library_rejects(blob[:cut]), errors), findings)
        assert status == 1


def test_mutate_bytes_changes_something():
    rng = random.Random(1)
    blob = bytes(range(256)) * 8
    blob = (200).to_bytes(8, "little") + blob
    assert sum(mutate_bytes(blob, RandomChooser(rng)) != blob for _ in range(50)) >= 45
