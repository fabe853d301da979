"""The guide's ``src/tools/analysis`` scripts (see ``src/__init__.py``)."""
