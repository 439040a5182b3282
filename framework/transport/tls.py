"""Server TLS from config: certificate files, optional mutual TLS, reloaded when they change.

One :class:`ServerTls` serves the HTTP, WebSocket (an :class:`ssl.SSLContext`) and gRPC
(``grpc.ServerCredentials``) servers::

    tls:
      cert_file: /etc/tls/tls.crt
      key_file: /etc/tls/tls.key
      client_ca_file: /etc/tls/ca.crt     # mutual TLS: client certificates signed by this CA
      client_auth: require                # none | optional | require

Reload: certificate rotation (cert-manager, a Kubernetes secret update) replaces the files
while the server runs. For gRPC, grpc asks before each new handshake and gets the new
certificate once the files changed (``grpc.dynamic_ssl_server_credentials``). For HTTP and
WebSocket, :meth:`ServerTls.watch` (started by the servers) watches the files and loads the
new key pair into the same ``SSLContext``, so every new connection uses it; established
connections keep theirs. A new client CA file is added to the trusted set (OpenSSL cannot
forget a CA without a new context), so retire a CA by restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from framework.config.model import ConfigModel

__all__ = ["ClientAuth", "ServerTls", "TlsOptions"]

ClientAuth = Literal["none", "optional", "require"]

_log = logging.getLogger("pykratos.tls")


class TlsOptions(ConfigModel):
    """TLS settings of a server (a config section).

    Attributes:
        cert_file: PEM certificate chain (leaf first).
        key_file: PEM private key of the certificate.
        key_password: password of an encrypted key, if any.
        client_ca_file: PEM CA bundle that client certificates must chain to (mTLS).
        client_auth: ``none`` (no client certificate asked), ``optional`` (verified if sent)
            or ``require`` (mutual TLS: a handshake without a valid client certificate fails).
        minimum_version: lowest TLS version accepted (``TLSv1.2`` or ``TLSv1.3``).
    """

    cert_file: str
    key_file: str
    key_password: str | None = None
    client_ca_file: str | None = None
    client_auth: ClientAuth = "none"
    minimum_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"

    @model_validator(mode="after")
    def _ca_for_client_auth(self) -> TlsOptions:
        if self.client_auth != "none" and not self.client_ca_file:
            raise ValueError(
                f"client_auth={self.client_auth!r} needs client_ca_file (the CA that signs "
                "the client certificates)"
            )
        return self


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size


class ServerTls:
    """The TLS material of one or more servers, loaded from :class:`TlsOptions` files.

    Raises ``OSError`` / ``ssl.SSLError`` at construction when a file is missing or does not
    hold a usable certificate/key, so a bad config fails at start, not at the first client.
    """

    def __init__(self, options: TlsOptions) -> None:
        self.options = options
        self._lock = threading.Lock()  # grpc's fetcher runs on a grpc thread
        self._stamps = self._current_stamps()
        self._context = self._new_context()
        # Watch the directories, links unresolved: rotation often swaps files or symlinks
        # (a Kubernetes secret volume swaps its ..data link).
        self._directories = sorted({os.path.dirname(os.path.abspath(f)) for f in self._files()})
        self._reloaded = asyncio.Event()
        self._watchers = 0
        self._watch_task: asyncio.Task[None] | None = None

    def _files(self) -> tuple[str, ...]:
        opts = self.options
        return tuple(f for f in (opts.cert_file, opts.key_file, opts.client_ca_file) if f)

    def _current_stamps(self) -> tuple[tuple[int, int] | None, ...]:
        return tuple(_stamp(f) for f in self._files())

    # -- ssl (HTTP, WebSocket) -------------------------------------------------------------

    def _new_context(self) -> ssl.SSLContext:
        opts = self.options
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if opts.minimum_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
        )
        self._load_into(context)
        context.verify_mode = {
            "none": ssl.CERT_NONE,
            "optional": ssl.CERT_OPTIONAL,
            "require": ssl.CERT_REQUIRED,
        }[opts.client_auth]
        return context

    def _load_into(self, context: ssl.SSLContext) -> None:
        opts = self.options
        context.load_cert_chain(opts.cert_file, opts.key_file, opts.key_password)
        if opts.client_ca_file:
            context.load_verify_locations(cafile=opts.client_ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """The server ``SSLContext``; the same object across reloads."""
        return self._context

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; True if reloaded.

        A failed load (a half-written file during rotation) is logged and the previous
        certificate stays in use; the next change tries again.
        """
        with self._lock:
            try:
                stamps = self._current_stamps()
            except OSError as exc:
                _log.warning("TLS files not readable, keeping the current certificate: %s", exc)
                return False
            if stamps == self._stamps:
                return False
            try:
                self._load_into(self._context)
            except (OSError, ssl.SSLError) as exc:
                _log.error("TLS reload failed, keeping the current certificate: %s", exc)
                return False
            self._stamps = stamps
        _log.info("TLS certificate reloaded from %s", self.options.cert_file)
        return True

    # -- grpc ------------------------------------------------------------------------------

    def _grpc_configuration(self) -> Any:
        import grpc

        opts = self.options
        if opts.key_password:
            raise ValueError("gRPC cannot use an encrypted key_file; give it unencrypted")
        pair = (Path(opts.key_file).read_bytes(), Path(opts.cert_file).read_bytes())
        roots = Path(opts.client_ca_file).read_bytes() if opts.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)

    def grpc_credentials(self) -> Any:
        """``grpc.ServerCredentials`` that pick up changed files at the next handshake."""
        import grpc

        grpc_stamps = [self._current_stamps()]

        def fetch() -> Any:
            # Called by grpc before each new connection's handshake: a stat() per file.
            try:
                stamps = self._current_stamps()
                if stamps == grpc_stamps[0]:
                    return None
                configuration = self._grpc_configuration()
            except (OSError, ValueError) as exc:
                _log.warning("gRPC TLS reload failed, keeping the current certificate: %s", exc)
                return None
            grpc_stamps[0] = stamps
            _log.info("gRPC TLS certificate reloaded from %s", self.options.cert_file)
            return configuration

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            fetch,
            require_client_authentication=self.options.client_auth == "require",
        )

    # -- watching --------------------------------------------------------------------------

    async def watch(self) -> None:
        """Reload whenever a file changes; runs until cancelled."""
        from watchfiles import awatch

        async for _ in awatch(*self._directories, debounce=200, step=50):
            if await asyncio.to_thread(self.reload_if_changed):
                self._reloaded.set()
                self._reloaded = asyncio.Event()

    async def wait_reloaded(self) -> None:
        """Return after the watcher's next successful reload (for tests and tooling)."""
        await self._reloaded.wait()

    def start_watching(self) -> None:
        """Start :meth:`watch` (shared by the servers using this object; counted)."""
        self._watchers += 1
        if self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(
                self.watch(), name="tls-watch"
            )

    async def stop_watching(self) -> None:
        """Undo one :meth:`start_watching`; the last one cancels the watch."""
        self._watchers = max(0, self._watchers - 1)
        task = self._watch_task
        if self._watchers or task is None:
            return
        self._watch_task = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
