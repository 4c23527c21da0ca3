"""What every layer may use: atomic writes and provenance (:mod:`.io`), device resolution
(:mod:`.device`) and frame conversion (:mod:`.frames`). Imports no other package of the project."""
