"""The agent desktop: pages, a JSON API for them and live screen pops (a backend-for-frontend)."""
