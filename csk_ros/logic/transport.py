"""Will DDS carry the node's messages? The Fast DDS profile this process loaded, its shared-memory segment,
and which of the node's messages do not fit in it.

A message larger than the SHM segment leaves shared memory for fragmented UDP, where best-effort readers
lose whole messages (docs/dds.md: a 640x480 cloud reached a SensorData subscriber 1 time in 40 with Fast
DDS defaults). Fast DDS says nothing about it; the node does, once, with the sizes and the fix.
Pure Python (the XML is read with the standard library); no ROS import.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from csk_ros.tools.dds_profile import ENV_VARS, shipped_profile

DEFAULT_SHM_SEGMENT = 512 * 1024  # Fast DDS' builtin shared-memory transport
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


@dataclass(frozen=True)
class ActiveProfile:
    kind: str  # "none" (Fast DDS defaults) | "shipped" | "user" | "not_fast_dds"
    path: str | None
    shm_segment_bytes: int | None  # None: not Fast DDS, or no shared memory at all
    rmw: str

    def describe(self) -> str:
        if self.kind == "not_fast_dds":
            return f"not Fast DDS ({self.rmw}): not checked"
        where = f": {self.path}" if self.path else ""
        segment = "no SHM" if self.shm_segment_bytes is None else f"SHM segment {self.shm_segment_bytes / 2**20:g} MiB"
        return f"{self.kind}{where} ({segment})"


def _shm_segment(path: str) -> int | None:
    """The SHM segment a profile gives this process's participants: its SHM transport's segment_size,
    Fast DDS' default when it keeps the builtin transports, None when it has no shared memory."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return DEFAULT_SHM_SEGMENT  # Fast DDS would refuse it too; the node's check cannot do better

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    for descriptor in (e for e in root.iter() if local(e.tag) == "transport_descriptor"):
        fields = {local(child.tag): (child.text or "").strip() for child in descriptor}
        if fields.get("type", "").upper() == "SHM":
            try:
                return int(fields.get("segment_size") or DEFAULT_SHM_SEGMENT)
            except ValueError:
                return DEFAULT_SHM_SEGMENT
    builtin = [(e.text or "").strip().lower() for e in root.iter() if local(e.tag) == "useBuiltinTransports"]
    return None if builtin and builtin[0] == "false" else DEFAULT_SHM_SEGMENT


def active_profile(environ=None) -> ActiveProfile:
    """The profile the current process's Fast DDS loads (the environment it was started with)."""
    environ = os.environ if environ is None else environ
    rmw = environ.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp"
    if rmw not in FAST_DDS_RMWS:
        return ActiveProfile("not_fast_dds", None, None, rmw)
    path = next((environ[name] for name in ENV_VARS if environ.get(name)), None)
    if path is None:
        return ActiveProfile("none", None, DEFAULT_SHM_SEGMENT, rmw)
    try:
        shipped = Path(path).resolve() == shipped_profile().resolve()
    except OSError:
        shipped = False
    return ActiveProfile("shipped" if shipped else "user", path, _shm_segment(path), rmw)


def over_segment(sizes: dict[str, int], profile: ActiveProfile) -> dict[str, int]:
    """The messages (name -> bytes) that do not fit the profile's SHM segment."""
    if profile.kind == "not_fast_dds":
        return {}
    limit = profile.shm_segment_bytes or 0
    return {name: size for name, size in sizes.items() if size > limit}


def transport_warning(over: dict[str, int], profile: ActiveProfile) -> str:
    """One line for the log: what does not fit, why it matters and what fixes it."""
    listed = ", ".join(f"{name} {size / 1024:.0f} KB" for name, size in sorted(over.items()))
    fix = ("start the node with `ros2 launch csk_ros segment.launch.py` (it loads config/fastdds_large_frames.xml) "
           "or source scripts/dds_env.sh before it, and do the same in the camera driver's and the subscribers' "
           "processes")
    if "~/points" in over:
        fix += "; `output_size: model` makes the cloud smaller"
    segment = ("no shared memory" if profile.shm_segment_bytes is None
               else f"the {profile.shm_segment_bytes / 1024:.0f} KB shared-memory segment")
    return (f"DDS profile {profile.describe()}: {listed} exceed {segment}, so they travel as fragmented UDP, "
            f"where best-effort (SensorData) readers lose whole messages; {fix}")


class TransportCheck:
    """Message sizes as they become known (the first frame of each stream, the first mask): one warning
    line for everything that does not fit, given when the first mask is out (so inputs and outputs are
    in it), later ones only for messages newly over; and the state /diagnostics reports."""

    def __init__(self, profile: ActiveProfile):
        self.profile = profile
        self.sizes: dict[str, int] = {}
        self.over: dict[str, int] = {}
        self.warned: set[str] = set()
        self.ready = False  # the first mask is out: warn as soon as something is over

    def observe(self, sizes: dict[str, int], ready: bool = False) -> str | None:
        """Record sizes (name -> bytes); `ready` once the outputs are among them. Returns the warning due
        now (everything over the segment not warned about yet), or None."""
        self.sizes.update(sizes)
        self.over.update(over_segment(sizes, self.profile))
        self.ready = self.ready or ready
        due = {k: v for k, v in self.over.items() if k not in self.warned}
        if not self.ready or not due:
            return None
        self.warned.update(due)
        return transport_warning(due, self.profile)

    def diagnostics(self) -> dict[str, str]:
        return {"dds_profile": self.profile.describe(),
                "dds_over_segment": ", ".join(f"{k} {v}" for k, v in sorted(self.over.items())) or "none"}
