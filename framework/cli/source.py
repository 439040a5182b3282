"""Where this pykratos was installed from, so a generated project can install the same one.

pykratos is not published on PyPI: a new project's README and Dockerfile notes must name the
source tree or wheel this installation came from. pip records it in the distribution's
``direct_url.json`` (PEP 610) for installs from a path, a wheel file or a URL.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["DISTRIBUTION", "installed_from", "pykratos_requirement"]

DISTRIBUTION = "pykratos"


def installed_from() -> str | None:
    """The local path (source tree or wheel) or URL pykratos was installed from, if known."""
    # Not metadata.distribution(): from a source checkout, a build's pykratos.egg-info in the
    # current directory comes first on sys.path and has no direct_url.json.
    raws = (dist.read_text("direct_url.json") for dist in metadata.distributions(name=DISTRIBUTION))
    raw = next((text for text in raws if text), None)
    if raw is None:
        return None
    try:
        url = json.loads(raw)["url"]
    except (ValueError, KeyError, TypeError):
        return None
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        return str(path) if path.exists() else None
    return str(url)


def pykratos_requirement(extras: str, source: str | None) -> str:
    """A pip requirement for pykratos with ``extras``: ``pykratos[all] @ file:///...``.

    Without a known source it is the bare name, which only resolves once pykratos is on an
    index pip can reach.
    """
    if source is None:
        return f"{DISTRIBUTION}[{extras}]"
    url = source if "://" in source else Path(source).resolve().as_uri()
    return f"{DISTRIBUTION}[{extras}] @ {url}"
