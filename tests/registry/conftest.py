from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.etcd_server import EtcdServer


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A fresh etcd for one test (killed and its data removed after)."""
    server = EtcdServer(tmp_path / "etcd-data")
    server.start()
    try:
        yield server
    finally:
        server.stop(wipe=True)
