"""The guide's ``src.services.market_data`` package (see ``src/__init__.py``)."""
