"""A plain CNN FER baseline, benchmarked by fersnet as an external model (docs/extending.md)."""
