"""Stage 3, the card: Manifest + facts + provenance → the README text (front matter and Jinja templates)."""
