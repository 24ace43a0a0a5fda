"""The bench's own arithmetic: workload, WER, percentiles, compare (the run itself is `make bench`)."""

from benchmarks.stats import percentile, percentiles, word_errors
from benchmarks.workload import compare, make_workload


def test_workload_is_fixed_by_its_seed_and_mixes_cases():
    first, again = make_workload(30, seed=7), make_workload(30, seed=7)
    assert first == again and make_workload(30, seed=8) != first
    assert len({t.voice for t in first}) >= 4
    assert sum(t.barge_in for t in first) == 6 and sum(t.noise_snr_db is not None for t in first) == 7
    assert len({len(t.question) > 50 for t in first}) == 2  # short and long questions


def test_word_errors_counts_substitutions_insertions_deletions():
    assert word_errors("What is the capital of France?", "what is the capital of france") == (0, 6)
    assert word_errors("What is two plus two?", "what is 2 plus two") == (0, 5)  # digits count as their words
    assert word_errors("What is two plus two?", "what is to plus two") == (1, 5)
    assert word_errors("turn on the lights", "turn the lights off please") == (3, 4)


def test_percentiles_and_compare():
    p = percentiles([100, 200, 300, 400, None, 1000])
    assert p == {"p50": 300, "p90": 760, "max": 1000, "n": 5}  # interpolated between ranks, as `fleet stats`
    assert percentiles([None]) is None and percentile([], 0.5) != percentile([], 0.5)  # NaN when empty
    old = {"stages": {"ttfa_ms": {"p50": 1000.0, "p90": 2000.0}}, "cpu": {"idle_percent": 3.0}, "stt_wer": 0.1}
    new = {"stages": {"ttfa_ms": {"p50": 900.0, "p90": 2100.0}}, "cpu": {"idle_percent": 2.5}, "stt_wer": 0.08}
    lines = compare(old, new)
    assert any("ttfa_ms" in l and "(-100.0)" in l and "(+100.0)" in l for l in lines)
    assert any("idle_percent" in l and "(-0.5)" in l for l in lines) and any("-0.020" in l for l in lines)
