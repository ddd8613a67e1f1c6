"""Evaluation: logprob dumps of the reference and each variant → KL-divergence metrics → kld.json.
Nothing in publishing imports this package; it reads kld.json through `publish.manifest.kldartifact`."""
