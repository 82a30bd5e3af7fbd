"""The service's readiness state, shared by the app (``/readyz``) and the server (SIGTERM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lifecycle:
    """``ready`` once models are loaded and warmed; ``draining`` from SIGTERM until exit."""

    ready: bool = False
    draining: bool = False

    @property
    def accepting_traffic(self) -> bool:
        """What a load balancer should be told: route new traffic here or not."""
        return self.ready and not self.draining
