"""Device adapters (PC/SC ID card, PKCS#11 eToken, ESC/POS printer) and their simulators."""
