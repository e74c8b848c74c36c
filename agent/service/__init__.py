"""Running as a service: sd_notify and the watchdog (notify), signals, the API token (token),
provisioning (provision, bundle, tomlwrite), files written atomically (fsutil), and their CLI."""
