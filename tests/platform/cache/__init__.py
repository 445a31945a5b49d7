"""Test package (lets conftest import tests.support.*)."""
