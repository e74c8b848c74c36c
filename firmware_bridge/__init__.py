"""firmware_bridge: serial sensors (our MCU protocol and off-the-shelf UART sensors) to readings."""
