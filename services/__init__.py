"""The HTTP data API guide's service layer, under the module names its examples import (seed 003)."""
