import json
from pathlib import Path

from riskflow.contracts.events import DetectionEvent

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "detection_event.schema.json"


def test_committed_json_schema_matches_the_model() -> None:
    assert json.loads(SCHEMA.read_text()) == DetectionEvent.model_json_schema(), (
        "regenerate with: riskflow schema"
    )
