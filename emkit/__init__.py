"""emkit: emergent-misalignment research toolkit.

The pipeline, one module per stage: ``data`` (datasets) -> ``train`` (organisms) ->
``sampling`` -> ``store`` (SQLite results) -> ``report`` (HTML + plots).
"""

__version__ = "0.1.0"
