"""bitswarm.storage (in progress)."""
