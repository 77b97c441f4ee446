"""Tests of the runtimes: how weights become a callable on a device."""
