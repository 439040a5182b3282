"""Config: YAML/JSON files or a directory of them, ``${VAR:default}``, env overrides,
typed scans whose errors name the file and the key, and debounced watches. Sections derive
from :class:`ConfigModel`, so an unknown key is refused with the valid ones listed; a reload is
validated against every model the config was scanned with.

Example::

    cfg = load(args.conf, env_prefix="APP_")
    bootstrap = cfg.scan(Bootstrap)
    cfg.watch("log.level", lambda level: logging.getLogger().setLevel(level.upper()))
    app = App("svc", servers=[...], resources=[cfg.watcher()])
"""

from framework.config.config import Config, load
from framework.config.errors import ConfigError
from framework.config.model import ConfigModel
from framework.config.watch import ConfigWatcher, WatchCallback

__all__ = ["Config", "ConfigError", "ConfigModel", "ConfigWatcher", "WatchCallback", "load"]
