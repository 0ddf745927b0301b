"""Pillow work: sniff, verify, measure, preview."""
