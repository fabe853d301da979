"""The guide's ``src.services`` package (see ``src/__init__.py``)."""
