"""Catalogue tagging: tag a folder or manifest of tracks through the service or in-process.

``sources`` lists the tracks, ``shard`` splits them across machines, ``records`` and ``writers``
keep one result per track on disk (so runs resume), ``runner`` drives the work with bounded
concurrency, ``local`` swaps the HTTP service for the in-process pipeline, ``cli`` ties it up.
"""
