"""NGSI-LD output: FIWARE Smart Data Models entities (TrafficFlowObserved, AirQualityObserved),
printed by ``edge-agent export ngsi-ld`` and sent to a context broker by the NGSI-LD sink."""
