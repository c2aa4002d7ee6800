"""ambassador: one localhost address balanced over an external cluster."""
