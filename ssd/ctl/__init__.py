"""ssd-ctl, the command-line client."""
