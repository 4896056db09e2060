"""Adapters: implementations of the domain ports on real infrastructure."""
