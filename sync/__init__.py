"""Kiosk storage and the link to the central service: SQLite store, central client."""
