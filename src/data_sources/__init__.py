"""The low-level design's data sources (seed 001 section 3.2): the TWS client and ingestor."""
