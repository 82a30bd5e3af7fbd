"""Run the app under uvicorn with a graceful drain on SIGTERM.

Kubernetes (or any load balancer) keeps sending traffic for a moment after it sends SIGTERM,
until the endpoint removal propagates. So on the first SIGTERM the service only turns
``/readyz`` to 503 and keeps serving for ``drain_grace_seconds``; then uvicorn stops accepting
connections, lets in-flight requests finish, runs the lifespan shutdown and the process exits 0.
A second SIGTERM, or SIGINT, falls back to uvicorn's own immediate shutdown. If loading the
models fails, the server shuts down and the process exits 1.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
from types import FrameType

import uvicorn

from taggram.service.api import create_app
from taggram.service.api.protocol import protocol_class
from taggram.service.lifecycle import Lifecycle
from taggram.service.logs import configure_logging
from taggram.service.settings import Settings, SettingsError, misspelt_variables
from taggram.service.tagging import Tagger

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a graceful drain: on SIGTERM readiness drops first (the load balancer
    stops sending), requests are still served for the grace period, then uvicorn shuts down and
    lets in-flight requests finish.
    """

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace_seconds: float) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._grace = grace_seconds
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM starts draining; SIGINT or a second signal exits as uvicorn does."""
        if sig == signal.SIGTERM and self._exit_at is None and not self.should_exit:
            self._lifecycle.draining = True
            self._exit_at = time.monotonic() + self._grace
            log.info("SIGTERM: not ready, draining for %g s before shutdown", self._grace)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Exit once the grace period is over, or at once when model loading failed."""
        drained = self._exit_at is not None and time.monotonic() >= self._exit_at
        if drained or self._lifecycle.failed:
            self.should_exit = True
        return await super().on_tick(counter)


def check_address(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will (IPv6 for a host with a colon, ``SO_REUSEADDR``) and
    release it at once, so that an address the service cannot listen on is a usage error.

    uvicorn itself found out only after the application's start-up had run, logged the error
    among its start-up lines and exited 3; a second ``taggram serve`` on a port in use (the
    first one still running) read like a server that had started.

    Raises:
        SettingsError: the port is in use, the host does not resolve or is not an address of
            this machine, or the port needs privileges; the message says which setting to change.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as error:
            raise SettingsError(f"--host {host} (TAGGRAM_HOST): {error.strerror}") from error
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                reason = "is already in use (another taggram serve?); stop that server or choose"
                raise SettingsError(
                    f"{host}:{port} {reason} another --port (TAGGRAM_PORT)"
                ) from error
            if error.errno == errno.EADDRNOTAVAIL:
                raise SettingsError(
                    f"--host {host} (TAGGRAM_HOST) is not an address of this machine: "
                    "listen on 127.0.0.1, 0.0.0.0 (every interface) or one of its own"
                ) from error
            raise SettingsError(f"cannot listen on {host}:{port}: {error.strerror}") from error


def serve(settings: Settings) -> None:
    """Serve until SIGTERM (drained, exit 0) or SIGINT.

    Raises:
        RepositoryError: the model repository is missing or inconsistent, or lacks a model the
            settings name; raised before the port opens, so that the command can say it in one
            line instead of uvicorn logging a failed start-up's traceback.
        SettingsError: a malformed API key, an unreadable keys file, a provider that is not
            installed, or an address the service cannot listen on (:func:`check_address`);
            raised before the port opens too.
    """
    lifecycle = Lifecycle()
    tagger = Tagger(settings)
    app = create_app(settings, lifecycle, tagger)
    # After the repository and settings checks, which name the more likely mistake (and which
    # tests reach with an unprivileged --port 1).
    check_address(settings.host, settings.port)
    # Only once the settings are known to start: a refused start leaves logging as it was (the
    # command says why in one line), not a root handler on the stream stderr was at that time.
    configure_logging(settings.log_level, settings.log_format)
    for given, meant in misspelt_variables(os.environ).items():
        log.warning("%s is not a setting and is ignored: did you mean %s?", given, meant)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers propagate to the root handler (request ids, JSON)
        lifespan="on",
        # The proxy strips the prefix; uvicorn puts it back in the ASGI scope's root_path, which
        # Starlette's router removes again and the page and /docs use to build their links.
        root_path=settings.root_path,
        # Behind an ingress the peer is the proxy; its X-Forwarded-For names the client.
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=settings.keep_alive_seconds,
        # Problem details for the malformed requests uvicorn refuses itself, and a deadline for
        # a request's head (uvicorn has none: a slowloris client held its connection for ever).
        http=protocol_class(settings.read_timeout_seconds),
        # No route takes a WebSocket: an Upgrade is ignored and the request served as HTTP.
        ws="none",
    )
    DrainingServer(config, lifecycle, settings.drain_grace_seconds).run()
    if lifecycle.failed:
        raise SystemExit(1)
