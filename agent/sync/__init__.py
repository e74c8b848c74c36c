"""Store-and-forward to the city's MQTT broker: outbox, client, summaries, hub contract."""
