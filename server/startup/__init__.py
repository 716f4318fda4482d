"""Start-up: settings, the composition root, the runtime, the command line."""
