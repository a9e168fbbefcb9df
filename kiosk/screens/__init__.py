"""The touchscreen app (Kivy): screens bound to the engine's typed step views.

``app`` (the App, its routing and top-level error handler), ``base`` (how a screen registers, calls the
worker and navigates), ``worker`` (device and central calls off the UI thread), ``theme`` and
``widgets``; one module per flow (``issuance``, ``renewal``, ``revocation``, ``unblock``, ``check``)
beside the shared ``common``, ``identity`` and ``token`` screens; ``launch`` (``python -m kiosk run``),
``notify`` (systemd), ``drive`` (the offscreen drive); ``keyboards/`` holds the on-screen keyboard
layouts, loadable without Kivy.
"""
