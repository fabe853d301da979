"""The guide's ``src.core`` package (see ``src/__init__.py``)."""
