"""Kernel functions written once (one module per kernel area); designs are tables over them."""
