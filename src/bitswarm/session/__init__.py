"""bitswarm.session (in progress)."""
