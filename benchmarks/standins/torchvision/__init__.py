"""Stand-in for the part of torchvision the reference imports (see ../README.md)."""
