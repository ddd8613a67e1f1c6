"""Stage 1, the manifest: branches.yaml → a validated `Manifest` (schema, YAML line numbers, Hub metadata rules),
and the evaluation artifact it names, read back into the manifest's evaluation."""
