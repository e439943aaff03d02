"""Pure-torch networks and math for the style methods (StyleShot encoder, attention math, InST)."""
