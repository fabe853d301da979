"""The guide's ``src/tools`` scripts (see ``src/__init__.py``)."""
