"""FastAPI + uvicorn WebSocket codec service."""
