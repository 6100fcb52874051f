"""Deprecated alias of :mod:`projected_gan.distributed` (moved there); removed next release."""

from projected_gan._deprecated import alias_module

alias_module(__name__, "projected_gan.distributed")
