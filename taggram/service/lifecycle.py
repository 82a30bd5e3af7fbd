"""The service's readiness state, shared by the app (``/readyz``) and the server (signals)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lifecycle:
    """``ready`` once models are loaded and warmed; ``draining`` from SIGTERM until exit;
    ``failed`` when loading failed, which makes the server exit non-zero."""

    ready: bool = False
    draining: bool = False
    failed: bool = False

    @property
    def accepting_traffic(self) -> bool:
        """What a load balancer should be told: route new traffic here or not."""
        return self.ready and not self.draining

    @property
    def status(self) -> str:
        """``starting``, ``ready``, ``draining`` or ``failed``: the body of ``/readyz``."""
        if self.failed:
            return "failed"
        if self.draining:
            return "draining"
        return "ready" if self.ready else "starting"
