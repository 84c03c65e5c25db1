"""Browsing stored CTs and SEGs in the OHIF viewer: its app-config and a same-origin server (see README.md)."""
