"""bitswarm.tracker (in progress)."""
