"""A bounded slice of the fleet fuzz run (benchmarks/fuzz_fleet.py sends 10,000): hypothesis-generated
commands and desired-config documents through real mosquitto to the stand-alone device process."""

from __future__ import annotations

from benchmarks.fuzz_fleet import FuzzRun, fuzz, report

EXAMPLES = 250


def test_generated_commands_and_config_documents_all_get_an_answer(tmp_path, broker):
    run = FuzzRun(tmp_path, broker)
    try:
        figures = fuzz(run, EXAMPLES, warm_up=50)
    finally:
        log = run.close()
    print(report(figures))
    assert not figures.problems, report(figures)
    assert figures.sent == EXAMPLES and sum(figures.outcomes.values()) == EXAMPLES
    assert not log.startswith("THE DEVICE DIED") and "Traceback" not in log, log[-3000:]
    device = figures.device
    assert device["connected"] is True and device["connects"] == 1  # never dropped or restarted
    # every message the device got was answered or counted: commands and reports each answered once,
    # retained commands (ours, and the device's own clearing of them) ignored and counted
    retained = figures.outcomes["retained command refused"] + figures.outcomes["ignored (empty retained command)"]
    assert device["ignored"] >= retained and device["messages"] >= EXAMPLES
    assert figures.rss_end - figures.rss_warm < 4 * 2**20, report(figures)
