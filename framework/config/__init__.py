"""Config: YAML/JSON files or a directory of them, ``${VAR:default}``, env overrides,
typed scans whose errors name the file and the key, and debounced watches.

Example::

    cfg = load(args.conf, env_prefix="APP_")
    bootstrap = cfg.scan(Bootstrap)
    cfg.watch("log.level", lambda level: logging.getLogger().setLevel(level.upper()))
    app = App("svc", servers=[...], resources=[cfg.watcher()])
"""

from framework.config.config import Config, load
from framework.config.errors import ConfigError
from framework.config.watch import ConfigWatcher, WatchCallback

__all__ = ["Config", "ConfigError", "ConfigWatcher", "WatchCallback", "load"]
