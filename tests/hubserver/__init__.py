"""A local, git-backed server speaking the Hugging Face Hub HTTP protocol, for tests against the real client."""

from .server import HubServer, Request

__all__ = ["HubServer", "Request"]
