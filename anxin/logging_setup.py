"""One logging set-up for the CLI and the worker processes."""

from __future__ import annotations

import logging

# Libraries that narrate every packet at INFO.
NOISY = ("transitions", "amqtt", "httpx", "gmqtt", "alembic")  # alembic: migrate() says one line


def setup_logging(level: int = logging.INFO, tag: str = "") -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
