"""Offline side of csk_ros: datasets, CSK-Net model, losses and the train/eval CLIs (torch)."""
