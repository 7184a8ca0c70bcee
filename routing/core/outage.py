"""Saying that something we depend on is away once, and once that it is back, not at every attempt.

The admin's store and the API keys are read every second, the request log writes every batch, the live
history broadcasts every batch: while the database or Redis is away each would otherwise log a line
per attempt.
"""
from __future__ import annotations

import logging


class OutageLog:
    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.failing = False

    def failed(self, message: str, *args, level: int = logging.WARNING):
        """Log `message` if this is the first failure since the last success."""
        if not self.failing:
            self.logger.log(level, message, *args)
            self.failing = True

    def recovered(self, message: str, *args):
        """Log `message` if the last attempt failed."""
        if self.failing:
            self.logger.warning(message, *args)
            self.failing = False
