"""Offline demo material: tiny local models and bundled demo data."""
