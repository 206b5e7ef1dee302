"""Adapters that put agent frameworks' own storage interfaces on top of any store of ours."""
