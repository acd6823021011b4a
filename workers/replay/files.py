"""The files of a replay: recorded events (JSONL) and candidates (YAML), read with errors that
name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from riskflow.config.replay import Candidate, CandidatesFile
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.replay import RecordedEvent
from riskflow.errors import ConfigError


def brief(exc: ValidationError) -> str:
    """A validation error on one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def load_events(path: Path) -> list[RecordedEvent]:
    """A JSONL file of `RecordedEvent` lines, or of bare detection messages; a bad line is a
    `ConfigError` naming the file and line (nothing is replayed from a half-read file)."""
    events: list[RecordedEvent] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSONL file of events: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "event" not in data:
                data = {"event": DetectionEvent.model_validate(data).model_dump(mode="json")}
            events.append(RecordedEvent.model_validate(data))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc}") from None
        except ValidationError as exc:
            raise ConfigError(f"{path}:{number}: not a recorded event: {brief(exc)}") from None
    if not events:
        raise ConfigError(f"{path}: no events to replay")
    return events


def load_candidates(path: Path) -> list[Candidate]:
    """A YAML file `candidates: [...]`; names must be unique."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        candidates = CandidatesFile.model_validate(data).candidates
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a candidates file: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a candidates file: {brief(exc)}") from None
    names = [c.name for c in candidates]
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: candidate names must be unique: {names}")
    return candidates
