"""`config/cameras.yaml`: the cameras an edge process reads, and the detector's defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.significance import DEFAULT_RULES, Zone


class EdgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="bundled", description="'bundled', a .pt path/name, or a .yaml")
    models_dir: Path = Path("models")
    imgsz: int = Field(default=640, gt=0)
    conf: float = Field(default=0.25, ge=0, le=1)
    classes: list[str] | None = None
    device: str = "cpu"
    track: bool = False
    sample_every: int = Field(default=1, gt=0, description="infer every Nth frame read")
    max_queue: int = Field(
        default=1000, gt=0, description="messages without a keep class waiting for the broker"
    )
    keep_classes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RULES[0].classes),
        description="a frame with any detection of these classes is significant: lesser "
        "frames never push it out of the backlog (default: the fall rule's classes)",
    )
    max_significant_queue: int = Field(
        default=10_000, gt=0, description="significant messages waiting for the broker"
    )
    rtsp_transport: str = "tcp"
    read_timeout_seconds: float = Field(default=5.0, gt=0)
    stall_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a live stream with no frame for this long is counted as stalled and "
        "reopened (a frozen camera, a half-open connection)",
    )
    snapshots: bool = False
    snapshot_ttl_seconds: int = Field(default=600, gt=0)


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: str = Field(min_length=1, description="rtsp:// URL, file, folder or webcam index")
    zones: list[Zone] | None = None
    model: str | None = None
    imgsz: int | None = Field(default=None, gt=0)
    conf: float | None = Field(default=None, ge=0, le=1)
    classes: list[str] | None = None
    sample_every: int | None = Field(default=None, gt=0)
