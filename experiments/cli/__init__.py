"""The console scripts: skrr-inspect, skrr-prune, skrr-run, skrr-report, skrr-push, and what they
share (app: the config folder, one-line input errors, interrupts)."""
