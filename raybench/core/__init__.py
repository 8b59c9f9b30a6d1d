"""The pure measurement kernel: no Ray, no torch (a test enforces it)."""
