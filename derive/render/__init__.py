"""Renderers: LaTeX, plain text, NumPy code, diagrams."""
