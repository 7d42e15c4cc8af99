"""The classifier: backbones, head blocks, losses, and their assembly."""
