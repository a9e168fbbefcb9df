"""The PIN unblock flow on the shared screens: consent, insert the eToken, the ID card of its holder, a new
PIN (set with the SO PIN kept by this kiosk or escrowed at the CA), done.  It has no screen of its own."""

from __future__ import annotations

ROUTES = {("unblock", "token"): "insert_token", ("unblock", "new_pin"): "choose_pin"}
