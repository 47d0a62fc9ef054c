"""Models: a backbone (features) plus a head (angle encoding), both from registries."""
