"""Traffic analytics: tracking, counting lines and zones, speed, bins and forecasts."""
