"""The HTTP data API guide's data engine, under the module name its examples import (seed 003)."""
