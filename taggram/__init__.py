"""taggram: music and audio tagging as a service. ``taggram`` is the one console entry point."""
