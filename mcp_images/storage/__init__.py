"""Saved images: atomic files and images:// ids."""
