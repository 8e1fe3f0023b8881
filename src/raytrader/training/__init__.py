"""Training on Ray: data, RL agents, supervised models and hyperparameter search."""
