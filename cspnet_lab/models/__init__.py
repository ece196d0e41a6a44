"""The networks: DenseNet's layers, DenseNet, CSPDenseNet, PeleeNet, the darknet cfg models, the modern
CSP blocks, and the registry of named presets. Nothing here imports from ``measure``, ``train`` or ``lab``."""
