"""Errors of the tracker server."""

from __future__ import annotations

from bitswarm.errors import BitswarmError


class TrackerServerError(BitswarmError):
    """The tracker server could not start, persist or reach its store."""


class TrackerConfigError(TrackerServerError):
    """A tracker configuration value is invalid."""
