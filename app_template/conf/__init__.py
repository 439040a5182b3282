"""Typed configuration models."""

from app_template.conf.conf import Bootstrap

__all__ = ["Bootstrap"]
