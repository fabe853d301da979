"""The ingestion guide's ``src/ingestion`` package: its ``api_adapters`` modules are the platform's
``resources.adapters`` (README "Ingestion adapters")."""
