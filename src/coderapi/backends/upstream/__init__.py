from coderapi.backends.upstream.backend import UpstreamBackend

__all__ = ["UpstreamBackend"]
