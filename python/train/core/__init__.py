"""What both training stages share: config, entry, loop, checkpoints, runtime, metrics and plots."""
