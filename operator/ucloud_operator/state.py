"""Moved: the rules are in rules.py, the status builder in status.py."""

from .rules import Job, Observed, Settings, decide
from .status import Decision, Event

__all__ = ["Decision", "Event", "Job", "Observed", "Settings", "decide"]
