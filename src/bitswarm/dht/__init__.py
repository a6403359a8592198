"""bitswarm.dht (in progress)."""
