# The default card templates, shipped in the wheel as the `publish.templates` package (see pyproject.toml).
