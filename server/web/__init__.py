"""The HTTP toolkit every handler builds on: the base handler, JSON bodies, body limits."""
