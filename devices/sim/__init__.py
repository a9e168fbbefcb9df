"""Simulated hardware for the demo and the tests: private pcscd + virtual ID card, SoftHSM tokens, printer emulator."""
