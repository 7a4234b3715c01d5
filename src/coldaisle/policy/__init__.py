"""Declarative policy: rules over Frame columns, compiled safely to vectorised numpy, and the engine."""
