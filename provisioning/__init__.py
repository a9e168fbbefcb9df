"""Technician tools for provisioning a kiosk."""
