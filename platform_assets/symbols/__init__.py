"""Per-symbol assets: the tracked symbols as partitions, so the UI shows and fills each symbol."""
