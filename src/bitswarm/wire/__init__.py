"""bitswarm.wire (in progress)."""
