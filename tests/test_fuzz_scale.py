"""A short, fixed-seed run of bench/fuzz.py, the million-input mutation fuzzer.

The full runs (``python -m bench.fuzz``, a million inputs per target) are too
long for CI; this runs the same generators and checks in-process for a few
thousand inputs per target, so a change that makes a parser raise anything but
its own error type (MalformedPacket, FailoverWireError, ConfigError) fails here
with the seed and index that reproduce it.
"""

from __future__ import annotations

import pytest

from bench import fuzz

COUNTS = {"dhcp": 4000, "failover": 4000, "config": 3000}
SEED = 20240501


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzz_target_raises_only_its_own_error(target: str) -> None:
    res = fuzz.run(target, COUNTS[target], seed=SEED, jobs=1)
    assert res.count == COUNTS[target]
    report = "\n".join(
        f"{c.signature}: replay with `python -m bench.fuzz --target {target} --seed {SEED} "
        f"--replay {c.index}`; input {c.data.hex()}\n{c.trace}" for c in res.examples)
    assert res.crashes == 0, report


def test_inputs_are_reproducible_from_seed_and_index() -> None:
    # --replay relies on it: input i does not depend on the inputs before it.
    for target in fuzz.TARGETS:
        a = fuzz.make_input(target, SEED, 123)
        b = fuzz.make_input(target, SEED, 123)
        assert fuzz.input_bytes(a) == fuzz.input_bytes(b)


def test_corpora_are_valid_seeds() -> None:
    # Mutating valid inputs is what gets the fuzzer past the first checks.
    c = fuzz.corpus()
    for data in c.dhcp:
        fuzz.exercise_dhcp(data)
        fuzz.parse(data)
    for frame in c.frames:
        fuzz.exercise_frame(frame)
    assert any("[server]" in t for t in c.ini)


def test_a_crash_is_reported_with_its_input(tmp_path, monkeypatch) -> None:
    # The harness itself: an exception other than the target's own is caught,
    # counted once per input and saved with what reproduces it.
    def boom(data: bytes) -> None:
        if data[:1] == b"\x01":
            raise KeyError("planted")

    monkeypatch.setattr(fuzz, "exercise_dhcp", boom)
    res = fuzz.run("dhcp", 200, seed=1, jobs=1)
    assert res.crashes > 0 and res.examples
    crash = res.examples[0]
    assert crash.signature.startswith("KeyError at test_fuzz_scale.py:")
    path = fuzz.save_crash(crash, tmp_path)
    assert path.read_bytes() == crash.data
    text = path.with_suffix(".txt").read_text()
    assert f"--replay {crash.index}" in text and crash.data.hex() in text
