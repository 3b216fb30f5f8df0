"""Conversions between derive's parameters and other frameworks' modules.

Each framework lives in its own submodule (:mod:`derive.interop.torch`) and
imports that framework only when one of its functions is called.
"""
