"""Several server processes on one database: `Heartbeat` keeps this one's row alive and
finishes what a peer that died left open."""

from __future__ import annotations

from ._heartbeat import BeatNow as BeatNow
from ._heartbeat import GetHeartbeatStatus as GetHeartbeatStatus
from ._heartbeat import Heartbeat as Heartbeat
from ._heartbeat import HeartbeatClient as HeartbeatClient
from ._heartbeat import HeartbeatStatus as HeartbeatStatus
from ._heartbeat import PeerStatus as PeerStatus
from ._heartbeat import heartbeat_spec as heartbeat_spec
from ._heartbeat import process_identity as process_identity

__all__ = [
    "BeatNow",
    "GetHeartbeatStatus",
    "Heartbeat",
    "HeartbeatClient",
    "HeartbeatStatus",
    "PeerStatus",
    "heartbeat_spec",
    "process_identity",
]
