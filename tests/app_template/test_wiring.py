"""DI: missing wiring fails at start, naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import errors as di_errors

from app_template.container import Container
from app_template.wire import wire_app

from .conftest import make_bootstrap


def test_container_without_config_fails_naming_the_dependency() -> None:
    container = Container()
    with pytest.raises(di_errors.Error, match="config"):
        container.check_dependencies()


async def test_unwired_subscriber_fails_at_start_naming_the_handler(tmp_path: Path) -> None:
    bootstrap = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    container = Container()
    app = wire_app(bootstrap, container)
    app.handle_signals = False
    container.unwire()  # wire_app wired the subscriber module; undo it to simulate the mistake
    with pytest.raises(Exception, match="on_payment_succeeded"):
        await app.start()
