"""Tamga kiosk: the issuance core (pure) and the app that wires it to devices and the central service."""
