"""The ground tier: errors, artifacts and sidecars, safe file writing, file-format checks, data,
measurement and the cache. It imports nothing else of edgeinfer."""
