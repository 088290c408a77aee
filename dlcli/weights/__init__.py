"""The weights manager: named entries (registry), files (store), models from either (loader)."""
