"""Binds features/issuance.feature to the steps in features/conftest.py."""

from pytest_bdd import scenarios

scenarios("issuance.feature")
