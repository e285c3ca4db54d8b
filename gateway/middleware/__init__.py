"""The chain: one middleware per concern. The order lives in gateway.app."""
