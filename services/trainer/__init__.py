"""Trainer service: the training worker and the model validator (user model code runs only here)."""
