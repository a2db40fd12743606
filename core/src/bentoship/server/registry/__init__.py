"""Pushed bentos and models, and the upload protocol."""
