"""One module per command. Each is the library form of a CLI command: values in, a result value out."""
