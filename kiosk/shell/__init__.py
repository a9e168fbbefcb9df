"""The app shell: configuration, logging, wiring of the adapters, the technician CLI and the demo.

The only part of ``kiosk`` allowed to import ``devices/`` and ``sync/``; the core beside it stays pure.
"""
