"""Small shared helpers: atomic writes, provenance."""
