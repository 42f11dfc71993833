"""gm-provider: an open WBEM/CIM Group Manager (server profile failover, capacity rights)."""

__version__ = "0.1.0"
