"""Exporting monitoring records to a warehouse (see ``steps.export_monitoring``)."""
