"""The top layer: the scripts' typed config schemas and the Hydra glue they share. Only
``scripts/`` and this package see configs; the library takes typed arguments."""
