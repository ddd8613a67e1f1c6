"""Low-level helpers every stage may use, one job each; nothing here imports another hubpub package."""
