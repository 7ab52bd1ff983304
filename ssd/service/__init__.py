"""Running ssd as a service: systemd units, install and uninstall, readiness notification."""
