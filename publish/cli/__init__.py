"""The command line: click options, output and exit codes only; every command calls `publish.commands`."""
