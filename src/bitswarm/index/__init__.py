"""bitswarm.index (in progress)."""
