"""Clients: WebSocket client library, microphone loopback, latency tool."""
