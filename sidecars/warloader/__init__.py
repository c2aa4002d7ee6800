"""warloader: installs artifacts into the pod's shared volume, atomically and verified."""
