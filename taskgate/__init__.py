"""The composition root: wires gateway, contexts and messaging into processes (CLI, runtime)."""
