"""Tests of agent_session_store.server (a package so its conftest has its own module name)."""
