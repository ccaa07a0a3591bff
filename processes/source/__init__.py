"""A source that holds every sample's input payloads and sends them on the per-sample window schedule."""
