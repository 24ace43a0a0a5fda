import json

from edgeagent.turn.trace import TurnTrace, ms_between

DESIGN_FIELDS = {
    "turn_id", "device_id", "started_at", "wake_word", "wake_score", "speech_ms", "end_of_speech_to_final_ms",
    "llm_backend", "llm_ttft_ms", "llm_tokens", "tts_first_chunk_ms", "ttfa_ms", "speak_ms", "barge_in",
    "barge_in_stop_ms", "outcome", "error",
}


def test_trace_has_every_design_field_and_hides_text_by_default():
    trace = TurnTrace(device_id="dev1", transcript="what time is it", reply="It is noon.")
    data = trace.to_dict()
    assert DESIGN_FIELDS <= set(data)
    assert "transcript" not in data and "reply" not in data
    assert "what time" not in json.dumps(data)
    assert trace.to_dict(include_text=True)["transcript"] == "what time is it"
    assert data["started_at"].endswith("Z") and len(data["turn_id"]) == 32


def test_ms_between():
    assert ms_between(1.0, 1.2505) == 250.5
    assert ms_between(None, 1.0) is None
