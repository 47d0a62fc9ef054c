"""upright: learn the rotation angle of an image with a CNN and turn it back upright."""

__version__ = "0.1.0"
