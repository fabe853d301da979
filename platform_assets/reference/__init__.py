"""Reference data: corporate actions (splits, reverse splits, cash dividends) and price adjustment."""
