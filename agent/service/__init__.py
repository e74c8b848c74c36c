"""Running as a service: sd_notify and the watchdog (notify), signals, logging (logsetup),
provisioning (provision, bundle, tomlwrite), doctor, and their CLI (``token show | rotate`` among
them; the token itself is :mod:`agent.api.token`, files written atomically :mod:`agent.fsutil`)."""
