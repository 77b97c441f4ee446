"""Pure tracking algorithms (numpy / Python, no torch): a box Kalman filter, SAMURAI's
motion-aware selection, SAM2Long's pathway tree and SAM2 memory-frame selection. The SAM2
family adapters in `zooserve.families` apply them to the model's candidates."""
