"""Run the service: ``python -m cmd.server -conf configs/``."""

from __future__ import annotations

import argparse
import logging
import sys

from framework.config import ConfigError, load
from framework.log import setup_logging

from app_template.conf.conf import Bootstrap
from app_template.wire import wire_app

ENV_PREFIX = "APP_"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cmd.server",
        description="Run the service: HTTP, gRPC, WebSocket and broker subscribers in one process.",
        epilog=(
            "Any config key can be overridden from the environment as "
            f"{ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}SERVER__HTTP__PORT=8080; broker "
            f"options as {ENV_PREFIX}DATA__BROKER__OPTIONS__<NAME> (README: Config). "
            "SIGTERM/SIGINT stop gracefully."
        ),
    )
    parser.add_argument(
        "-conf",
        "--conf",
        default="configs",
        metavar="PATH",
        help="config file, or directory whose *.yaml/*.json files merge in name order "
        "(default: configs)",
    )
    parser.add_argument(
        "--write-docs",
        metavar="DIR",
        help="write openapi.json, asyncapi.json and asyncapi.html to DIR and exit, without "
        "starting anything (what 'pykratos docs DIR' runs)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args.conf, env_prefix=ENV_PREFIX)
        bootstrap = config.scan(Bootstrap)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(bootstrap.log.format, bootstrap.log.level)
    if bootstrap.tracing.enabled:
        from framework.tracing import setup_tracing

        setup_tracing(
            bootstrap.app.name,
            bootstrap.tracing.exporter,
            service_version=bootstrap.app.version,
            endpoint=bootstrap.tracing.endpoint,
            sample_ratio=bootstrap.tracing.sample_ratio,
        )
    try:
        app = wire_app(bootstrap)
    except Exception:
        logging.getLogger("cmd.server").exception("cannot build the service")
        return 1
    if args.write_docs:
        from framework.asyncapi import write_docs

        for path in write_docs(app, args.write_docs):
            print(f"wrote {path}")
        return 0
    # log.level opts in to live reload: edit the file, the level follows without a restart.
    config.watch("log.level", _apply_log_level)
    app.resources.append(config.watcher())
    return app.main()


def _apply_log_level(level: object) -> None:
    if isinstance(level, str) and level.upper() in logging.getLevelNamesMapping():
        logging.getLogger().setLevel(level.upper())
        logging.getLogger("cmd.server").info("log level is now %s", level.upper())
    else:
        logging.getLogger("cmd.server").warning("ignoring invalid log.level %r", level)


if __name__ == "__main__":
    sys.exit(main())
