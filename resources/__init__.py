"""External systems and storage as Dagster resources (built together by `resources.build`)."""
