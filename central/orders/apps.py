"""Django app configuration for the central service's orders."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "central.orders"
    label = "orders"
    verbose_name = "Tamga orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from central.orders import feeds

        feeds.connect()
