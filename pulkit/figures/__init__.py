"""Figures: the house style, one module per notebook's figures, widgets, and the registry."""
